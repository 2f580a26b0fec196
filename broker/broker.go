// Package broker keeps the SSH connections that carry tunnelled flows: a
// small pool per connection profile, opened on the profile's first flow
// (or at start) and shared by all its flows as direct-tcpip channels. It
// reaches servers directly, through SOCKS or HTTP proxies, or through jump
// profiles, and fails over between a profile's hosts.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// Dialer opens the TCP connection to an SSH server or proxy. It must not be
// captured by shunt itself.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ProxyRule chooses how to reach SSH servers whose host matches: through
// Proxy, or directly when Proxy is nil. Rules are tried in order.
type ProxyRule struct {
	// Hosts are host name patterns ("*.corp.example", "gw?"); Networks
	// match servers given by address. Both empty matches every server.
	Hosts    []string
	Networks []netip.Prefix
	Proxy    *url.URL
}

func (r *ProxyRule) matches(host string) bool {
	if len(r.Hosts) == 0 && len(r.Networks) == 0 {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		for _, n := range r.Networks {
			if n.Contains(a.Unmap()) {
				return true
			}
		}
	}
	for _, h := range r.Hosts {
		if ok, _ := path.Match(strings.ToLower(h), strings.ToLower(host)); ok {
			return true
		}
	}
	return false
}

// Options configure a Broker.
type Options struct {
	// Dialer reaches SSH servers and proxies; nil means a net.Dialer.
	Dialer Dialer
	// AgentSocket is the ssh-agent's socket (SSH_AUTH_SOCK); empty means
	// no agent.
	AgentSocket string
	// Prompter asks the user for passphrases, passwords, challenges and
	// host-key confirmations. Nil means nobody can be asked.
	Prompter Prompter
	// ProxyRules apply to profiles without a proxy of their own.
	ProxyRules []ProxyRule
	// Home is the home directory of the user shunt acts for, whose
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa a profile without
	// identity files uses (under sudo, the user who ran sudo, not root:
	// config.Machine.ActingUser). Empty means os.UserHomeDir.
	Home string
	// FileOwner, under sudo, is the user who ran sudo: the known_hosts
	// files and directories that accept-new and ask create in that
	// user's directories are given to them, as ssh would have made
	// them. Nil: what the broker creates stays the process's.
	FileOwner *FileOwner
	// Events, when set, is told every change of a profile's connection
	// state (see Events: Publish must not block).
	Events Events
	// Timings, when set, is told how long each SSH connection and each
	// channel took to set up (see Timings: it must not block).
	Timings Timings
	Log     logrus.FieldLogger
}

// Broker dials tunnelled connections through its profiles. It implements
// router.Tunnels.
type Broker struct {
	// set is the profiles in force and their pools; SetProfiles swaps it.
	set  atomic.Pointer[profileSet]
	opts Options
	log  logrus.FieldLogger
	// ctx ends when Close is called: prompts still waiting are cancelled.
	ctx  context.Context
	stop context.CancelFunc
	// proxyRules replace opts.ProxyRules once SetProxyRules is called.
	proxyRules atomic.Pointer[[]ProxyRule]

	// The host-from-application pools, "profile@server", made by DialVia
	// and forgotten once unused (see pool.unusedCheck).
	// viaMu also orders SetProfiles with DialVia and Close.
	viaMu     sync.Mutex
	via       map[string]*pool
	viaClosed bool
	startCtx  context.Context // Start's, for profiles SetProfiles adds; guarded by viaMu

	// Pools SetProfiles replaced or removed, draining (see pool.retire).
	retiredMu sync.Mutex
	retired   []*pool
}

// New returns a broker for profiles. Nothing connects until Start or the
// first Dial.
func New(profiles []Profile, opts Options) (*Broker, error) {
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	b := &Broker{opts: opts, log: opts.Log, via: map[string]*pool{}}
	b.ctx, b.stop = context.WithCancel(context.Background())
	checked, err := checkProfiles(profiles)
	if err != nil {
		return nil, err
	}
	set := &profileSet{pools: map[string]*pool{}}
	for _, p := range checked.order {
		pl := newPool(b, p, p.Name, "")
		set.pools[p.Name] = pl
		set.order = append(set.order, pl)
	}
	b.set.Store(set)
	return b, nil
}

// Start connects the profiles that ask to be connected at start. Failures
// are logged; the next flow tries again.
// Profiles SetProfiles adds later connect then, with ctx too.
func (b *Broker) Start(ctx context.Context) {
	b.viaMu.Lock()
	b.startCtx = ctx
	b.viaMu.Unlock()
	for _, pl := range b.set.Load().order {
		pl.connectOnStart(ctx)
	}
}

// connectOnStart connects the pool if its profile asks to be connected at
// start.
func (pl *pool) connectOnStart(ctx context.Context) {
	if !pl.p.ConnectOnStart {
		return
	}
	go func() {
		if _, err := pl.links[0].get(ctx); err != nil {
			pl.log.WithField(logrus.ErrorKey, briefly(err)).Warn("connect on start failed; the first flow tries again")
		}
	}()
}

// Dial opens a direct-tcpip channel to addr ("host:port", resolved by the
// server) through the named profile, connecting first if needed. A refusal
// by the server is a *ChannelError. The connection's reads fail with
// ErrConnectionLost (not io.EOF) when the SSH connection under it dies.
func (b *Broker) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	for {
		pl, ok := b.set.Load().pools[profile]
		if !ok {
			return nil, fmt.Errorf("no connection profile %q", profile)
		}
		if len(pl.p.Hosts) == 0 {
			return nil, fmt.Errorf("profile %q has no host: only host-from-application rules can use it", profile)
		}
		if l := pl.acquire(); l != nil {
			return pl.dialOn(ctx, l, addr)
		}
		// SetProfiles retired the pool just now: the set in force has
		// its successor, or no such profile.
	}
}

// DialVia is Dial through an SSH connection to server itself, made with
// the profile's port, user, authentication, host-key policy and route
// (host from application: the flow is encrypted all the way to its
// destination host). Connections are kept per server, like a profile's,
// and forgotten with the server once idle (after the profile's
// idle_timeout with no channel).
func (b *Broker) DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error) {
	key := profile + "@" + server
	// The profile is looked up under viaMu, so that SetProfiles, which
	// retires the servers of changed profiles, sees the pool made here.
	b.viaMu.Lock()
	if b.viaClosed {
		b.viaMu.Unlock()
		return nil, errors.New("broker closed")
	}
	base, ok := b.set.Load().pools[profile]
	if !ok {
		b.viaMu.Unlock()
		return nil, fmt.Errorf("no connection profile %q", profile)
	}
	pl, ok := b.via[key]
	if !ok {
		p := *base.p
		p.Name = key
		p.Hosts = []string{server}
		p.ConnectOnStart = false
		pl = newPool(b, &p, profile, server)
		b.via[key] = pl
	}
	// Counted under viaMu, so that pruneVia never forgets a pool a flow
	// is about to use.
	l := pl.acquire()
	b.viaMu.Unlock()
	return pl.dialOn(ctx, l, addr)
}

// closeWait bounds how long Close waits for connections to close (x/crypto
// sends what is queued, for up to closeFlushTime).
const closeWait = 5 * time.Second

// Close closes every connection; later Dials fail. It waits, for a bounded
// time, until x/crypto has let go of them: all are closed at once, so a
// connection through a jump profile is not left waiting for its jump.
func (b *Broker) Close() error {
	b.stop()
	var closed []<-chan struct{}
	b.viaMu.Lock()
	b.viaClosed = true
	for _, pl := range b.set.Load().order {
		closed = append(closed, pl.close()...)
	}
	for _, pl := range b.via {
		closed = append(closed, pl.close()...)
	}
	b.viaMu.Unlock()
	for _, pl := range b.retiredPools() {
		closed = append(closed, pl.close()...)
	}
	deadline := time.NewTimer(closeWait)
	defer deadline.Stop()
	left := len(closed)
	for _, c := range closed {
		select {
		case <-c:
			left--
		case <-deadline.C:
			return fmt.Errorf("%d of %d SSH connections still closing after %v", left, len(closed), closeWait)
		}
	}
	return nil
}

// SetupError is a failure to set up the tunnel itself (no server answered,
// the login failed), as opposed to the server refusing one destination.
type SetupError struct{ Err error }

// Error is the failure in short: the connection attempt's log line has
// the long explanations (a refused host key, a refused login), and every
// flow the attempt refuses refers to it instead of repeating it.
func (e *SetupError) Error() string { return briefly(e.Err) }
func (e *SetupError) Unwrap() error { return e.Err }

// TunnelSetupFailed marks the error for the router's fallback_direct.
func (e *SetupError) TunnelSetupFailed() bool { return true }

// ErrConnectionLost is what reads on a tunnelled connection return when the
// SSH connection under it died: the flow must be reset, not ended cleanly.
var ErrConnectionLost = errors.New("SSH connection lost")

// ChannelError is a server's refusal to open a channel.
type ChannelError struct {
	Profile string
	Target  string
	Err     *ssh.OpenChannelError
}

func (e *ChannelError) Error() string {
	switch e.Err.Reason {
	case ssh.Prohibited:
		return fmt.Sprintf("profile %s: server forbids TCP forwarding (to %s): %s", e.Profile, e.Target, e.Err.Message)
	case ssh.ConnectionFailed:
		return fmt.Sprintf("profile %s: server could not connect to %s: %s", e.Profile, e.Target, e.Err.Message)
	}
	return fmt.Sprintf("profile %s: server refused channel to %s: %v", e.Profile, e.Target, e.Err)
}

func (e *ChannelError) Unwrap() error { return e.Err }

// DestinationRefused tells a proxy's client what became of its
// connection: the server refused the channel, or the destination refused
// the server's connect ("Connection refused", as OpenSSH reports it),
// against a destination the server could not reach (no route, no such
// name, a timeout).
func (e *ChannelError) DestinationRefused() bool {
	return e.Err.Reason != ssh.ConnectionFailed || strings.Contains(strings.ToLower(e.Err.Message), "refused")
}
