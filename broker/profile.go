package broker

import (
	"fmt"
	"net/url"
	"time"

	"github.com/shunt-dev/shunt/internal/sshdefaults"
)

// Profile is how to reach and log in to one SSH server.
type Profile struct {
	Name string
	// Hosts are tried in order until one answers (failover).
	Hosts []string
	Port  int
	User  string

	// AuthMethods in the order they are tried: "publickey",
	// "keyboard-interactive", "password". Empty means all three, in
	// that order, as OpenSSH does.
	AuthMethods []string
	// IdentityFiles are private keys; "FILE-cert.pub" beside one is used as
	// its certificate. Empty means OpenSSH's default files.
	IdentityFiles []string
	// IdentitiesOnly uses only the identity files' keys, even when the
	// agent holds others.
	IdentitiesOnly bool
	// CertificateFiles are OpenSSH certificates for the identity keys.
	CertificateFiles []string

	// KnownHosts are OpenSSH known_hosts files; new keys are recorded in
	// the first.
	KnownHosts    []string
	HostKeyPolicy HostKeyPolicy

	// Ciphers in order of preference; empty means DefaultCiphers.
	Ciphers []string
	// KeepaliveInterval and KeepaliveCount: a connection whose server has
	// not answered for interval × count is closed.
	KeepaliveInterval time.Duration
	KeepaliveCount    int
	// IdleTimeout closes a connection that long after its last channel
	// closed; negative means never.
	IdleTimeout time.Duration
	// Connections spreads the profile's flows over that many SSH
	// connections, least loaded first.
	Connections int

	// Proxy reaches the server through a SOCKS4, SOCKS4a, SOCKS5 or HTTP
	// CONNECT proxy; nil means the broker's proxy rules decide.
	Proxy *url.URL
	// Jump names the profile whose connection carries this one's (a jump
	// host, OpenSSH's ProxyJump).
	Jump string
	// ConnectOnStart connects when the broker starts instead of on the
	// first flow.
	ConnectOnStart bool
	// MaxPendingOpens bounds the channel opens in flight (sent, not yet
	// answered by the server) over the profile's connections; a flow
	// beyond it is refused at once. 0 means DefaultMaxPendingOpens.
	MaxPendingOpens int
	// OpenStallTimeout: a connection whose server has answered no channel
	// open for this long while some waited is closed and replaced. 0
	// means DefaultOpenStallTimeout, negative never.
	OpenStallTimeout time.Duration
}

// HostKeyPolicy says what to do with a host key known_hosts does not have.
// A changed key is always refused.
type HostKeyPolicy int

const (
	// Strict refuses unknown keys.
	Strict HostKeyPolicy = iota
	// AcceptNew records an unknown key in known_hosts and accepts it.
	AcceptNew
	// Ask asks the user through the prompter.
	Ask
)

func (p HostKeyPolicy) String() string {
	switch p {
	case Strict:
		return "strict"
	case AcceptNew:
		return "accept-new"
	case Ask:
		return "ask"
	}
	return fmt.Sprintf("policy(%d)", int(p))
}

// ParseHostKeyPolicy parses "strict", "accept-new" or "ask".
func ParseHostKeyPolicy(s string) (HostKeyPolicy, error) {
	switch s {
	case "strict", "":
		return Strict, nil
	case "accept-new":
		return AcceptNew, nil
	case "ask":
		return Ask, nil
	}
	return Strict, fmt.Errorf("unknown host key policy %q: use strict, accept-new or ask", s)
}

// DefaultCiphers are the ciphers of a profile that names none (AES-GCM
// first); config applies ssh_config's relative Ciphers lists to the same.
var DefaultCiphers = sshdefaults.Ciphers

// Defaults for profiles that leave a setting out.
const (
	DefaultKeepaliveInterval = 15 * time.Second
	DefaultKeepaliveCount    = 3
	// DefaultIdleTimeout: mail and chat clients poll every few minutes;
	// ten minutes keeps one connection across their polls (no handshake,
	// no new password prompt) and still lets a forgotten tunnel go.
	DefaultIdleTimeout = 10 * time.Minute
)

// AuthMethod names.
const (
	AuthPublicKey           = "publickey"
	AuthKeyboardInteractive = "keyboard-interactive"
	AuthPassword            = "password"
)

func (p *Profile) applyDefaults() {
	if p.Port == 0 {
		p.Port = 22
	}
	if len(p.Ciphers) == 0 {
		p.Ciphers = DefaultCiphers
	}
	if p.KeepaliveInterval <= 0 {
		p.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if p.KeepaliveCount <= 0 {
		p.KeepaliveCount = DefaultKeepaliveCount
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	if p.Connections <= 0 {
		p.Connections = 1
	}
	if p.MaxPendingOpens <= 0 {
		p.MaxPendingOpens = DefaultMaxPendingOpens
	}
	if p.OpenStallTimeout == 0 {
		p.OpenStallTimeout = DefaultOpenStallTimeout
	}
	if len(p.AuthMethods) == 0 {
		p.AuthMethods = []string{AuthPublicKey, AuthKeyboardInteractive, AuthPassword}
	}
}
