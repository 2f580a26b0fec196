// Package config reads shunt's YAML configuration. Every error names the file
// and line and says how to fix it; unknown keys are errors, so a typo never
// silently drops a setting.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"
	"go4.org/netipx"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// Defaults.
const (
	// DefaultMTU is the TUN's MTU. Every packet on the TUN starts or ends
	// in shunt's own stack on this machine; none is forwarded onto a real
	// link, so the MTU is free of any path's limits. Near the 64 KiB IP
	// maximum, a bulk transfer costs ~40x fewer packets (and stack
	// traversals) than at 1500. A LAN gateway's clients need no lower one:
	// their TCP connections end in shunt's stack, which sends them
	// segments of the MSS they announced.
	DefaultMTU = 65520
	// MaxMTU is the largest MTU: a packet and its offload header fill one
	// of gVisor's 64 KiB buffers, which packets are read into directly.
	MaxMTU = 65520
	// DefaultSSHPort is the port of a profile that names none.
	DefaultSSHPort = 22
	// DefaultShutdownGrace is shutdown_grace when not set.
	DefaultShutdownGrace = 5 * time.Second
)

// DefaultTUNName is tun.name when not set, on the OS goos: tun.DefaultName
// there (netlayout.DeviceName).
func DefaultTUNName(goos string) string { return netlayout.DeviceName(goos) }

// Log formats.
const (
	LogText = "text"
	LogJSON = "json"
)

// Config is one configuration file.
type Config struct {
	Profiles   []Profile   `yaml:"profiles"`
	ProxyRules []ProxyRule `yaml:"proxy_rules"`
	Rules      []Rule      `yaml:"rules"`
	// AlwaysDirectApplications go direct before any rule is looked at.
	AlwaysDirectApplications []string `yaml:"always_direct_applications"`
	TUN                      TUN      `yaml:"tun"`
	Log                      Log      `yaml:"log"`
	// Metrics is the Prometheus endpoint, off by default.
	Metrics Metrics `yaml:"metrics"`
	Control Control `yaml:"control"`
	// Console is the web console's TCP listener, off by default.
	Console Console `yaml:"console"`
	// ShutdownGrace is how long running flows may go on once shunt
	// stops (SIGTERM, shunt down) before they are reset.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// shutdownGraceFile is the file ShutdownGrace was written in.
	shutdownGraceFile string
	// DNS is split DNS (see DNS).
	DNS DNS `yaml:"dns"`
	// StateDir holds what survives a restart: the fake-IP table and the
	// backup of resolv.conf. DefaultStateDir when not set.
	StateDir     string `yaml:"state_dir"`
	stateDirFile string
	stateDirLine int
	// SOCKSListen and HTTPProxyListen are where shunt serves a SOCKS5
	// (and 4, 4a) proxy and an HTTP proxy ("127.0.0.1:1080", one address
	// or a list) whose connections go through the rules as captured
	// flows do.
	SOCKSListen     StringList `yaml:"socks_listen"`
	HTTPProxyListen StringList `yaml:"http_proxy_listen"`
	// AllowFrom are the networks whose hosts may use those two besides
	// this host's loopback; a listener on another address needs it.
	AllowFrom []string `yaml:"allow_from"`
	// SOCKSUsers, when set, are the users the SOCKS listener serves, and
	// no one else (RFC 1929).
	SOCKSUsers []SOCKSUser `yaml:"socks_users"`
	// StaticTunnels are ssh -L style listeners (StaticTunnel).
	StaticTunnels []StaticTunnel `yaml:"static_tunnels"`
	// Where the listener keys were written; listeners are them validated.
	listenFile                     string
	socksLine, httpLine, allowLine int
	listeners                      []Listener
	// KillSwitch keeps the captured destinations unreachable while shunt
	// is not running: after shunt down, a stop signal or a crash, until
	// the next start or shunt cleanup (loopback and the SSH servers
	// exempt). Off by default: then the captured destinations take the
	// host's normal routes again once shunt stops.
	KillSwitch bool `yaml:"kill_switch"`
	// killSwitchSet: the file writes kill_switch (later layers override).
	killSwitchSet bool
	// FlowMemory bounds the data that flows hold buffered in shunt
	// (ByteSize; 0 when not set: the engine derives a default from the
	// machine's memory). Over it, the flows whose applications have
	// stopped reading longest are reset.
	FlowMemory ByteSize `yaml:"flow_memory"`
	// flowMemoryFile is the file FlowMemory was written in.
	flowMemoryFile string

	// Path is the file it was read from.
	Path string `yaml:"-"`
	// Problems are what is wrong, on this machine, with the files the
	// configuration names (keys, known_hosts, ssh_config hosts), each at
	// its file and line. They are not errors of the file: the files are
	// read again at each connection, so they can be fixed while shunt
	// runs.
	Problems []Problem `yaml:"-"`

	machine Machine
	// account is the user shunt acts for (Machine.ActingUser).
	account    Account
	accountErr error
	// actingUID is the account's uid (actingUIDOK: known); daemon is
	// Options.Daemon.
	actingUID   uint32
	actingUIDOK bool
	daemon      bool

	sshConfigFiles []string
	sshConfigs     *sshConfigs
	// sshConfigRead are the ssh_config files that exist.
	sshConfigRead []string
	// generated counts the profiles made from ssh_config ProxyJump, at
	// the end of Profiles; jumping holds the aliases whose jump chains
	// are being built (to catch loops).
	generated int
	jumping   map[string]bool
}

// Options change how a file is read.
type Options struct {
	// SSHConfigFiles are OpenSSH client configurations for profiles with
	// ssh_config; nil means DefaultSSHConfigFiles.
	SSHConfigFiles []string
	// Machine is where the user, the home directory and the files named
	// come from; its zero value is the real machine.
	Machine Machine
	// Daemon reads the configuration for shunt daemon: a profile without
	// allowed_users carries the flows of the daemon's own user (its
	// effective uid) only, even when it was started under sudo. Without
	// it (shunt up, check, explain) the default is the user shunt acts
	// for (Machine.ActingUser).
	Daemon bool
}

// setMachine fixes the machine and the user the configuration is read for.
func (c *Config) setMachine(m Machine, daemon bool) {
	c.machine = m.withDefaults()
	c.account, c.accountErr = c.machine.ActingUser()
	c.actingUID, c.actingUIDOK = c.machine.actingUID()
	c.daemon = daemon
}

// Account is the user the configuration was read for (Machine.ActingUser):
// "~" in it is that user's home, and that user's default keys are the
// ones a profile without identity files uses.
func (c *Config) Account() Account { return c.account }

// expandHome replaces a leading "~" with the acting user's home.
func (c *Config) expandHome(p string) string {
	return expandHome(p, c.account.Home)
}

// Profile is an SSH connection profile.
type Profile struct {
	Name              string     `yaml:"name"`
	Host              StringList `yaml:"host"`
	Port              int        `yaml:"port"`
	User              string     `yaml:"user"`
	IdentityFiles     []string   `yaml:"identity_files"`
	IdentitiesOnly    bool       `yaml:"identities_only"`
	CertificateFiles  []string   `yaml:"certificate_files"`
	KnownHosts        StringList `yaml:"known_hosts"`
	HostKeyPolicy     string     `yaml:"host_key_policy"`
	AuthMethods       []string   `yaml:"auth_methods"`
	SSHConfig         string     `yaml:"ssh_config"`
	Proxy             string     `yaml:"proxy"`
	Jump              string     `yaml:"jump"`
	ConnectOnStart    bool       `yaml:"connect_on_start"`
	Connections       int        `yaml:"connections"`
	KeepaliveInterval Duration   `yaml:"keepalive_interval"`
	KeepaliveCount    int        `yaml:"keepalive_count"`
	IdleTimeout       Duration   `yaml:"idle_timeout"`
	Ciphers           []string   `yaml:"ciphers"`
	// AllowedUsers are the local users (names or uids) whose flows may
	// ride on this profile's SSH identity; "any" (or "*") lets every
	// user's. Not set: only the user shunt acts for (under sudo, the user
	// who ran it), and for shunt daemon the daemon's own user (see
	// AllowedUIDs).
	AllowedUsers UserList `yaml:"allowed_users"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`

	// lines are where the keys were written (see lineOf); fromSSHConfig
	// are the keys that ssh_config filled.
	lines         keyLines
	fromSSHConfig map[string]bool
	// allowUIDs and allowAny are AllowedUsers resolved, or its default.
	allowUIDs []uint32
	allowAny  bool
}

// AllowedUIDs are the uids whose flows may ride on the profile, from
// allowed_users or its default (Options.Daemon says which); anyUser means
// every user's flows may, and uids is then empty.
func (p *Profile) AllowedUIDs() (uids []uint32, anyUser bool) {
	return slices.Clone(p.allowUIDs), p.allowAny
}

// ProxyRule chooses how SSH servers are reached (Tectia's proxy rules).
type ProxyRule struct {
	// Destinations are SSH server patterns: host names with * and ?
	// wildcards, addresses, or networks. Omitted means any server.
	Destinations []string `yaml:"destinations"`
	// Proxy is a socks4://, socks4a://, socks5:// or http:// URL, or
	// "direct".
	Proxy string `yaml:"proxy"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the line of the rule.
func (r *ProxyRule) UnmarshalYAML(n *yaml.Node) error {
	type plain ProxyRule
	r.Line = n.Line
	return n.Decode((*plain)(r))
}

// StringList is one string or a list of strings.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = StringList{n.Value}
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// Duration is a Go duration ("15s", "10m"), or "never" (negative).
type Duration struct {
	D   time.Duration
	Set bool
	scalar
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.scalar = scalar{Raw: n.Value, Line: n.Line}
	d.Set = true
	if n.Value == "never" {
		d.D = -1
		return nil
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		d.err = fmt.Errorf("%q is not a duration: write e.g. 15s, 10m or 1h", n.Value)
	}
	d.D = v
	return nil
}

// Rule is a filter rule.
type Rule struct {
	Name string `yaml:"name"`
	// Sources are the clients the rule is for: addresses, networks and
	// ranges. Without them the rule matches this host's own flows, and
	// no flow another host routed through this one (a LAN gateway's).
	Sources             []Source      `yaml:"sources"`
	Destinations        []Destination `yaml:"destinations"`
	Ports               []Port        `yaml:"ports"`
	Applications        []string      `yaml:"applications"`
	Users               []UserRef     `yaml:"users"`
	Action              string        `yaml:"action"`
	Profile             string        `yaml:"profile"`
	HostFromApplication bool          `yaml:"host_from_application"`
	FallbackDirect      bool          `yaml:"fallback_direct"`
	// OnTunnelDown is what a tunnel rule does with a flow whose tunnel
	// cannot be set up: TunnelDownBlock (the default: refuse it) or
	// TunnelDownDirect (the same as fallback_direct: true). TunnelDown
	// gives it with the default filled in.
	OnTunnelDown string `yaml:"on_tunnel_down"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
	// emptyLists are the matcher keys written with no value or an empty
	// list, and their lines: "destinations: []" reads as "any" to YAML
	// but almost never means it.
	emptyLists []emptyList
	// keyLines are the lines of on_tunnel_down and fallback_direct.
	onTunnelDownLine, fallbackDirectLine int
}

// TunnelDown is what the rule does when its tunnel cannot be set up:
// TunnelDownDirect when on_tunnel_down: direct or fallback_direct: true
// says so, else TunnelDownBlock.
func (r *Rule) TunnelDown() string {
	if r.OnTunnelDown == TunnelDownDirect || (r.OnTunnelDown == "" && r.FallbackDirect) {
		return TunnelDownDirect
	}
	return TunnelDownBlock
}

// emptyMeans is what an absent matcher key matches.
var emptyMeans = map[string]string{
	"sources":      "this host's own flows only",
	"destinations": "any destination",
	"ports":        "every port",
	"applications": "every application",
	"users":        "every user",
}

type emptyList struct {
	key  string
	line int
}

// TUN configures the capture device.
type TUN struct {
	Name string `yaml:"name"`
	MTU  int    `yaml:"mtu"`
	// Enabled false: no TUN, no routes, no root; shunt serves only its
	// listeners (socks_listen, http_proxy_listen, static_tunnels). Nil
	// means true (TUNEnabled).
	Enabled *bool `yaml:"enabled"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// Log configures logging.
type Log struct {
	Level string `yaml:"level"`
	// Format is text (logrus's TextFormatter) or json (JSONFormatter).
	Format string `yaml:"format"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// Control configures the control socket (shunt status, reload, ...).
type Control struct {
	// Socket is the socket's path; DefaultControlSocket when not set.
	Socket string `yaml:"socket"`
	// Group names the group (a name or a gid) whose members may use the
	// socket besides root and shunt's own user; empty: none.
	Group string `yaml:"group"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the line of the section.
func (c *Control) UnmarshalYAML(n *yaml.Node) error {
	type plain Control
	c.Line = n.Line
	return n.Decode((*plain)(c))
}

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path is 108 bytes on Linux, 104 on the BSDs and macOS, with its
// terminating NUL).
const maxSocketPath = 103

// Errorf is an *Error at the tun section, for what is checked outside
// config: the OS's rules for the device's name (tun.CheckName), which
// shunt check and the engine apply.
func (t *TUN) Errorf(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if t.File == "" {
		return errors.New(msg)
	}
	return &Error{File: t.File, Line: t.Line, Msg: msg}
}

// UnmarshalYAML records the line of the section.
func (t *TUN) UnmarshalYAML(n *yaml.Node) error {
	type plain TUN
	t.Line = n.Line
	return n.Decode((*plain)(t))
}

// UnmarshalYAML records the line of the section.
func (l *Log) UnmarshalYAML(n *yaml.Node) error {
	type plain Log
	l.Line = n.Line
	return n.Decode((*plain)(l))
}

// Destination is what a rule's destinations list holds, as written: an
// address, a network, a range ("10.0.0.5-10.0.0.20"), a host name, a
// domain wildcard ("*.corp.example"), or "any".
type Destination struct {
	// Prefixes are the networks of an address, network or range.
	Prefixes []netip.Prefix
	Host     string // a host name
	Domain   string // a wildcard, "*.corp.example"
	Any      bool
	scalar
}

// Port is a port or an inclusive range "lo-hi", as written; a single port
// has Lo == Hi.
type Port struct {
	Lo, Hi uint16
	scalar
}

// scalar records where a scalar value was written; its parse error is
// reported by validation, with every other error, not at decode time.
type scalar struct {
	Raw  string
	Line int
	err  error
}

func (s *scalar) isScalar() {}

type scalarValue interface{ isScalar() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Destination) UnmarshalYAML(n *yaml.Node) error {
	d.scalar = scalar{Raw: n.Value, Line: n.Line}
	if n.Kind != yaml.ScalarNode {
		d.err = errors.New("a destination is an address, network, range, host name, *.domain or any")
		return nil
	}
	d.Prefixes, d.Host, d.Domain, d.Any, d.err = parseDestination(strings.TrimSpace(n.Value))
	return nil
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHostName reports whether s is a DNS host name (at least one label).
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

func parseDestination(v string) (prefixes []netip.Prefix, host, domain string, anyDest bool, err error) {
	lower := strings.TrimSuffix(strings.ToLower(v), ".")
	switch {
	case lower == "any":
		return nil, "", "", true, nil
	case strings.HasPrefix(lower, "*."):
		if !validHostName(lower[2:]) {
			return nil, "", "", false, fmt.Errorf("destination %q is not a domain wildcard (write e.g. *.corp.example)", v)
		}
		return nil, "", lower, false, nil
	}
	if p, ok, err := parseNetworks("destination", v); ok {
		return p, "", "", false, err
	}
	if validHostName(lower) && !looksNumeric(lower) {
		return nil, lower, "", false, nil
	}
	return nil, "", "", false, fmt.Errorf("destination %q is not an IP address, network, range, host name, *.domain or any (write e.g. 10.1.2.3, 10.1.0.0/24, 10.0.0.5-10.0.0.20, mail.corp.example or *.corp.example)", v)
}

// parseNetworks parses an address, a network or a range ("10.0.0.5-10.0.0.20")
// into prefixes; ok is false when v is none of them. what names the value
// in errors ("destination").
func parseNetworks(what, v string) (prefixes []netip.Prefix, ok bool, err error) {
	if strings.Contains(v, "-") && !strings.Contains(v, "/") && strings.ContainsAny(v, ".:") && isRange(v) {
		lo, hi, _ := strings.Cut(v, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(lo))
		b, err2 := netip.ParseAddr(strings.TrimSpace(hi))
		if err1 != nil || err2 != nil || a.Unmap().Is4() != b.Unmap().Is4() || b.Unmap().Less(a.Unmap()) {
			return nil, true, fmt.Errorf("%s %q is not an address range (write e.g. 10.0.0.5-10.0.0.20, low to high, one family)", what, v)
		}
		r := netipx.IPRangeFrom(a.Unmap(), b.Unmap())
		return r.Prefixes(), true, nil
	}
	if p, err := netip.ParsePrefix(v); err == nil {
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				return nil, true, fmt.Errorf("%s %q mixes IPv4-mapped and IPv6 space: write the IPv4 network instead", what, v)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Masked() != p {
			return nil, true, fmt.Errorf("%s %q has host bits set: write %s", what, v, p.Masked())
		}
		return []netip.Prefix{p}, true, nil
	}
	if a, err := netip.ParseAddr(v); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, true, nil
	}
	return nil, false, nil
}

// Source is what a rule's sources list holds, as written: an address, a
// network or a range of the clients the rule is for.
type Source struct {
	Prefixes []netip.Prefix
	scalar
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Source) UnmarshalYAML(n *yaml.Node) error {
	s.scalar = scalar{Raw: n.Value, Line: n.Line}
	if n.Kind != yaml.ScalarNode {
		s.err = errors.New("a source is an address, network or range (write e.g. 192.168.50.7, 192.168.50.0/24 or 192.168.50.10-192.168.50.20)")
		return nil
	}
	s.Prefixes, s.err = parseSource(strings.TrimSpace(n.Value))
	return nil
}

// parseSource parses an address, network or range. Names are refused: a
// flow's source is an address, and looking names up would let the
// resolver's answers say who may use a tunnel.
func parseSource(v string) ([]netip.Prefix, error) {
	if p, ok, err := parseNetworks("source", v); ok {
		return p, err
	}
	lower := strings.TrimSuffix(strings.ToLower(v), ".")
	switch {
	case lower == "any":
		return nil, fmt.Errorf("source %q: sources takes addresses and networks; to let every host through, write 0.0.0.0/0 and ::/0", v)
	case strings.HasPrefix(lower, "*.") || (validHostName(lower) && !looksNumeric(lower)):
		return nil, fmt.Errorf("source %q is a name, and sources takes addresses, networks and ranges only (a flow's source is never looked up): write the host's address, e.g. 192.168.50.7, or its network, e.g. 192.168.50.0/24", v)
	}
	return nil, fmt.Errorf("source %q is not an IP address, network or range (write e.g. 192.168.50.7, 192.168.50.0/24, fd50::/64 or 192.168.50.10-192.168.50.20)", v)
}

// isRange tells an address range from a host name with a hyphen.
func isRange(v string) bool {
	lo, _, _ := strings.Cut(v, "-")
	_, err := netip.ParseAddr(strings.TrimSpace(lo))
	return err == nil
}

// looksNumeric catches mistyped addresses ("10.1.2") that would otherwise
// pass as host names.
func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

// UserRef is a user name or uid, as written.
type UserRef struct {
	UID uint32
	scalar
	// named is a name to look up in the user database (by validate,
	// through the Machine).
	named bool
}

// UnmarshalYAML implements yaml.Unmarshaler: a uid, or a name.
func (u *UserRef) UnmarshalYAML(n *yaml.Node) error {
	u.scalar = scalar{Raw: n.Value, Line: n.Line}
	if id, err := strconv.ParseUint(n.Value, 10, 32); err == nil {
		u.UID = uint32(id)
		return nil
	}
	u.named = true
	return nil
}

// UserList is one user or a list of users.
type UserList []UserRef

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *UserList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		var u UserRef
		if err := u.UnmarshalYAML(n); err != nil {
			return err
		}
		*l = UserList{u}
		return nil
	}
	var s []UserRef
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// resolve looks a user name up in the user database.
func (u *UserRef) resolve(m Machine) {
	if !u.named {
		return
	}
	u.named = false
	usr, err := m.LookupUser(u.Raw)
	id, perr := uint64(0), error(nil)
	if err == nil {
		id, perr = strconv.ParseUint(usr.Uid, 10, 32)
	}
	if err != nil || perr != nil {
		u.err = fmt.Errorf("user %q is unknown on this machine: write a user name or a uid", u.Raw)
		return
	}
	u.UID = uint32(id)
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	p.scalar = scalar{Raw: n.Value, Line: n.Line}
	bad := fmt.Errorf("port %q is not a port or range (write e.g. 25 or \"993-995\", within 1-65535)", n.Value)
	if n.Kind != yaml.ScalarNode {
		p.err = bad
		return nil
	}
	lo, hi, isRange := strings.Cut(n.Value, "-")
	if !isRange {
		hi = lo
	}
	l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	h, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if err1 != nil || err2 != nil || l == 0 || l > h {
		p.err = bad
		return nil
	}
	p.Lo, p.Hi = uint16(l), uint16(h)
	return nil
}

// UnmarshalYAML records the line of the profile, and of its keys.
func (p *Profile) UnmarshalYAML(n *yaml.Node) error {
	type plain Profile
	p.Line = n.Line
	if err := n.Decode((*plain)(p)); err != nil {
		return err
	}
	p.lines = linesOf(n)
	return nil
}

// keyLines are the lines of a mapping's keys, and of the items of their
// values: key → the key's line, then each item's.
type keyLines map[string][]int

func linesOf(n *yaml.Node) keyLines {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	out := keyLines{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		l := []int{k.Line}
		if v.Kind == yaml.SequenceNode {
			for _, it := range v.Content {
				l = append(l, it.Line)
			}
		}
		out[k.Value] = l
	}
	return out
}

// lineOf is the line of the profile's key, or of its item'th item (from
// 0). A key that was not written points at the line of ssh_config: when
// ssh_config filled it, else at the profile.
func (p *Profile) lineOf(key string, item int) int {
	l, ok := p.lines[key]
	switch {
	case ok && item >= 0 && item+1 < len(l):
		return l[item+1]
	case ok:
		return l[0]
	case p.fromSSHConfig[key]:
		return p.lineOf("ssh_config", -1)
	}
	return p.Line
}

// UnmarshalYAML records the line of the rule.
func (r *Rule) UnmarshalYAML(n *yaml.Node) error {
	type plain Rule
	r.Line = n.Line
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.emptyLists = nil
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "on_tunnel_down":
			r.onTunnelDownLine = k.Line
		case "fallback_direct":
			r.fallbackDirectLine = k.Line
		case "sources", "destinations", "ports", "applications", "users":
			if v.Tag == "!!null" || (v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
				r.emptyLists = append(r.emptyLists, emptyList{k.Value, k.Line})
			}
		}
	}
	return nil
}

// Error is a configuration error at a place in a file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Load reads, decodes and validates the file at path. Its error joins every
// problem found, each an *Error.
func Load(path string) (*Config, error) {
	return LoadWith(path, Options{})
}

// Parse decodes and validates data, naming path in errors.
func Parse(path string, data []byte) (*Config, error) {
	return ParseWith(path, data, Options{})
}

// LoadWith is Load with options.
func LoadWith(path string, opts Options) (*Config, error) {
	m := opts.Machine.withDefaults()
	data, err := m.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := m.configFileSafe(path); err != nil {
		return nil, err
	}
	return ParseWith(path, data, opts)
}

// ParseWith is Parse with options.
func ParseWith(path string, data []byte, opts Options) (*Config, error) {
	c, keyErrs := decode(path, data)
	if c == nil {
		return nil, keyErrs
	}
	c.sshConfigFiles = opts.SSHConfigFiles
	c.setMachine(opts.Machine, opts.Daemon)
	if err := errors.Join(keyErrs, c.validate()); err != nil {
		return nil, err
	}
	return c, nil
}

// decode reads one file: YAML syntax, unknown keys and value types, with
// every item marked with its file. Meaning is checked by validate, after
// layers are merged. Unknown keys come back as an error together with the
// config (so their report can join validate's); a nil config means the
// file could not be decoded at all.
func decode(path string, data []byte) (*Config, error) {
	errorAt := func(line int, format string, args ...any) error {
		return &Error{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	root, err := decodeYAML(path, data)
	if err != nil {
		return nil, err
	}
	var errs []error
	checkKeys(root, reflect.TypeFor[Config](), "", func(line int, msg string) {
		errs = append(errs, errorAt(line, "%s", msg))
	})
	// Unknown keys do not stop decoding (they are skipped), so one run
	// reports them together with every other problem.
	c := &Config{Path: path}
	if err := root.Decode(c); err != nil {
		return nil, errors.Join(append(errs, typeErrors(path, err))...)
	}
	// An item left empty ("- " alone) was not decoded at all, so has no
	// line yet: give it its own.
	itemLines := func(key string) []int {
		var out []int
		if top := root.Content[0]; top.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(top.Content); i += 2 {
				if top.Content[i].Value == key {
					for _, it := range top.Content[i+1].Content {
						out = append(out, it.Line)
					}
				}
			}
		}
		return out
	}
	place := func(key string, n int, set func(i, line int)) {
		l := itemLines(key)
		for i := range n {
			line := 1
			if i < len(l) {
				line = l[i]
			}
			set(i, line)
		}
	}
	place("profiles", len(c.Profiles), func(i, line int) {
		c.Profiles[i].File = path
		if c.Profiles[i].Line == 0 {
			c.Profiles[i].Line = line
		}
	})
	place("rules", len(c.Rules), func(i, line int) {
		c.Rules[i].File = path
		if c.Rules[i].Line == 0 {
			c.Rules[i].Line = line
		}
	})
	place("proxy_rules", len(c.ProxyRules), func(i, line int) {
		c.ProxyRules[i].File = path
		if c.ProxyRules[i].Line == 0 {
			c.ProxyRules[i].Line = line
		}
	})
	c.TUN.File, c.Log.File, c.Control.File, c.shutdownGraceFile = path, path, path, path
	c.flowMemoryFile = path
	c.Metrics.File, c.DNS.File, c.stateDirFile = path, path, path
	c.Console.File = path
	c.stateDirLine = keyLine(root, "state_dir")
	c.listenFile = path
	c.socksLine, c.httpLine, c.allowLine = keyLine(root, "socks_listen"), keyLine(root, "http_proxy_listen"), keyLine(root, "allow_from")
	for i := range c.SOCKSUsers {
		c.SOCKSUsers[i].File = path
	}
	for i := range c.StaticTunnels {
		c.StaticTunnels[i].File = path
	}
	c.killSwitchSet = keyLine(root, "kill_switch") > 0
	for i := range c.DNS.ResolveThrough {
		c.DNS.ResolveThrough[i].File = path
	}
	return c, errors.Join(errs...)
}

// checkKeys reports every mapping key that has no field in t, recursively.
func checkKeys(n *yaml.Node, t reflect.Type, where string, report func(int, string)) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkKeys(c, t, where, report)
		}
		return
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[scalarValue]()) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // the decoder reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok && (k.Value == "password" || k.Value == "passphrase") {
				report(k.Line, fmt.Sprintf("%ss never go in the config file: remove it; shunt asks for it when a tunnel first needs it (on the terminal, or through SSH_ASKPASS)", k.Value))
				continue
			}
			if !ok {
				msg := fmt.Sprintf("unknown key %q%s", k.Value, where)
				if s := closest(k.Value, names); s != "" {
					msg += fmt.Sprintf(": did you mean %q?", s)
				} else {
					msg += fmt.Sprintf(": known keys are %s", strings.Join(names, ", "))
				}
				report(k.Line, msg)
				continue
			}
			checkKeys(v, ft, " in "+strings.TrimPrefix(k.Value+where, " in "), report)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for _, c := range n.Content {
			checkKeys(c, t.Elem(), where, report)
		}
	}
}

// Closest returns the name within edit distance 2 of s, if any: the
// "did you mean" of an unknown key (shunt gateway's configuration too).
func Closest(s string, names []string) string { return closest(s, names) }

// closest returns the name within edit distance 2 of s, if any.
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validate fills defaults and checks meaning, collecting every error.
func (c *Config) validate() error {
	var errs []error
	errorAt := func(file string, line int, format string, args ...any) {
		if file == "" {
			file = c.Path
		}
		errs = append(errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	c.Problems = nil
	problemAt := func(fatal bool) func(string, int, string, ...any) {
		return func(file string, line int, format string, args ...any) {
			if file == "" {
				file = c.Path
			}
			c.Problems = append(c.Problems, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...), Fatal: fatal})
		}
	}
	warnAt := problemAt(false)
	// The OS's rules for the name are tun's (tun.CheckName), applied by
	// shunt check and the engine; config only fills the default.
	if c.TUN.Name == "" {
		c.TUN.Name = DefaultTUNName(runtime.GOOS)
	}
	if c.TUN.MTU == 0 {
		c.TUN.MTU = DefaultMTU
	}
	if c.TUN.MTU < 1280 || c.TUN.MTU > MaxMTU {
		errorAt(c.TUN.File, c.TUN.Line, "tun.mtu %d is out of range: use 1280 (the IPv6 minimum) to %d", c.TUN.MTU, MaxMTU)
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if _, err := logrus.ParseLevel(c.Log.Level); err != nil {
		errorAt(c.Log.File, c.Log.Line, "log.level %q is not a level: use panic, fatal, error, warn, info, debug or trace", c.Log.Level)
	}
	c.validateMetrics(errorAt)
	switch c.Log.Format {
	case "":
		c.Log.Format = LogText
	case LogText, LogJSON:
	default:
		errorAt(c.Log.File, c.Log.Line, "log.format %q is not a format: use text or json", c.Log.Format)
	}
	if c.Control.Socket == "" {
		c.Control.Socket = DefaultControlSocket
		if s := UserControlSocket(c.machine.Getenv); s != "" && c.unprivileged() {
			c.Control.Socket = s
		}
	}
	switch s := c.Control.Socket; {
	case !strings.HasPrefix(s, "/"):
		errorAt(c.Control.File, c.Control.Line, "control.socket %q is not an absolute path: write e.g. %s", s, DefaultControlSocket)
	case len(s) > maxSocketPath:
		errorAt(c.Control.File, c.Control.Line, "control.socket %q is %d bytes long, more than a Unix socket's address holds (%d): choose a shorter path", s, len(s), maxSocketPath)
	}
	if strings.ContainsAny(c.Control.Group, " \t:") {
		errorAt(c.Control.File, c.Control.Line, "control.group %q is not a group: write a group name or a gid", c.Control.Group)
	}
	switch g := &c.ShutdownGrace; {
	case g.err != nil:
		errorAt(c.shutdownGraceFile, g.Line, "shutdown_grace: %v", g.err)
	case g.D < 0:
		errorAt(c.shutdownGraceFile, g.Line, "shutdown_grace cannot be never: write how long running flows may go on when shunt stops, e.g. 5s, or 0s to reset them at once")
	case !g.Set:
		g.D = DefaultShutdownGrace
	}
	c.validateFlowMemory(errorAt)

	profiles := map[string]bool{}
	var names []string
	for i := range c.Profiles {
		p := &c.Profiles[i]
		switch {
		case p.Name == "":
			errorAt(p.File, p.Line, "profile #%d has no name: add name: so rules can refer to it", i+1)
		case profiles[p.Name]:
			errorAt(p.File, p.Line, "profile %q is defined twice: rename or remove one", p.Name)
		default:
			profiles[p.Name] = true
			names = append(names, p.Name)
		}
	}
	// ssh_config first: a ProxyJump there adds profiles (to the end of
	// the list, so work on copies).
	original := len(c.Profiles)
	for i := range original {
		if pp := c.Profiles[i]; pp.SSHConfig != "" {
			if err := c.applySSHConfig(&pp); err != nil {
				errorAt(pp.File, pp.Line, "profile %q: %v", pp.Name, err)
			} else {
				c.checkAlias(&pp, warnAt)
			}
			c.Profiles[i] = pp
		}
	}
	for _, g := range c.Profiles[original:] {
		profiles[g.Name] = true
	}
	for i := range c.Profiles {
		p := &c.Profiles[i]
		if len(p.Host) == 0 && !c.onlyHostFromApplication(p.Name) {
			errorAt(p.File, p.Line, "profile %q has no host: add host: with the SSH server's name or address (or a list, tried in order); only rules with host_from_application can use a profile without one", p.Name)
		}
		if p.Port == 0 {
			p.Port = DefaultSSHPort
		}
		if p.Port < 1 || p.Port > 65535 {
			errorAt(p.File, p.Line, "profile %q: port %d is out of range 1-65535", p.Name, p.Port)
		}
		if p.User == "" {
			p.User = c.account.Name
		}
		for j, f := range p.IdentityFiles {
			p.IdentityFiles[j] = c.expandHome(f)
		}
		for j, f := range p.CertificateFiles {
			p.CertificateFiles[j] = c.expandHome(f)
		}
		if len(p.KnownHosts) == 0 {
			p.KnownHosts = StringList{"~/.ssh/known_hosts"}
		}
		for j, f := range p.KnownHosts {
			p.KnownHosts[j] = c.expandHome(f)
		}
		if _, err := hostKeyPolicy(p.HostKeyPolicy); err != nil {
			errorAt(p.File, p.Line, "profile %q: %v", p.Name, err)
		}
		for _, m := range p.AuthMethods {
			switch m {
			case AuthPublicKey, AuthKeyboardInteractive, AuthPassword:
			default:
				errorAt(p.File, p.Line, "profile %q: unknown auth method %q: use publickey, keyboard-interactive or password", p.Name, m)
			}
		}
		if p.Proxy != "" && p.Jump != "" {
			errorAt(p.File, p.Line, "profile %q has both proxy and jump: the jump profile reaches the server; set the proxy on that profile instead", p.Name)
		}
		if p.Proxy != "" {
			if err := checkProxy(p.Proxy); err != nil {
				errorAt(p.File, p.Line, "profile %q: %v", p.Name, err)
			}
		}
		if p.Jump != "" && !profiles[p.Jump] {
			errorAt(p.File, p.Line, "profile %q jumps through unknown profile %q: use one of %s", p.Name, p.Jump, listOr(names))
		}
		if p.Connections < 0 || p.Connections > 64 {
			errorAt(p.File, p.Line, "profile %q: connections %d is out of range 1-64", p.Name, p.Connections)
		}
		if p.KeepaliveCount < 0 {
			errorAt(p.File, p.Line, "profile %q: keepalive_count must be positive", p.Name)
		}
		for _, d := range []Duration{p.KeepaliveInterval, p.IdleTimeout} {
			if d.err != nil {
				errorAt(p.File, d.Line, "profile %q: %v", p.Name, d.err)
			}
		}
		if p.KeepaliveInterval.D < 0 {
			errorAt(p.File, p.KeepaliveInterval.Line, "profile %q: keepalive_interval cannot be never", p.Name)
		}
		c.resolveAllowedUsers(p, errorAt, warnAt)
	}
	c.checkJumpLoops(errorAt)
	if c.accountErr != nil && len(c.Profiles) > 0 {
		p := c.Profiles[0]
		warnAt(p.File, p.Line, "the home directory of the user shunt acts for is unknown (%v): paths that start with ~ are left as written", c.accountErr)
	}
	used := c.usedProfiles()
	for i := range c.Profiles {
		c.checkFiles(&c.Profiles[i], used[c.Profiles[i].Name], report{fatalAt: problemAt(true), warnAt: warnAt})
		c.checkModes(&c.Profiles[i], errorAt)
	}
	for i := range c.ProxyRules {
		r := &c.ProxyRules[i]
		if r.Proxy == "" {
			errorAt(r.File, r.Line, "proxy rule #%d has no proxy: write a socks4://, socks4a://, socks5:// or http:// URL, or direct", i+1)
		} else if r.Proxy != "direct" {
			if err := checkProxy(r.Proxy); err != nil {
				errorAt(r.File, r.Line, "proxy rule #%d: %v", i+1, err)
			}
		}
	}

	for i := range c.Rules {
		r := &c.Rules[i]
		label := fmt.Sprintf("rule #%d", i+1)
		if r.Name != "" {
			label += fmt.Sprintf(" %q", r.Name)
		}
		for _, e := range r.emptyLists {
			errorAt(r.File, e.line, "%s: %s is empty, and an empty list would match %s: list them, or leave the key out to match %s on purpose", label, e.key, emptyMeans[e.key], emptyMeans[e.key])
		}
		for _, src := range r.Sources {
			if src.err != nil {
				errorAt(r.File, src.Line, "%s: %v", label, src.err)
			}
		}
		for _, d := range r.Destinations {
			if d.err != nil {
				errorAt(r.File, d.Line, "%s: %v", label, d.err)
			}
		}
		for j := range r.Users {
			u := &r.Users[j]
			u.resolve(c.machine)
			if u.err != nil {
				errorAt(r.File, u.Line, "%s: %v", label, u.err)
			}
		}
		for _, a := range r.Applications {
			if a == "" || (strings.Contains(a, "/") && !filepath.IsAbs(a)) {
				errorAt(r.File, r.Line, "%s: application %q: write an executable name (thunderbird) or an absolute path (/usr/bin/mutt)", label, a)
			}
		}
		switch goos := c.machine.GOOS; {
		case len(r.Applications) > 0 && !flowApplications(goos):
			errorAt(r.File, r.Line, "%s: applications cannot be looked up on %s yet: remove them from the rule", label, goos)
		case len(r.Users) > 0 && !flowUIDs(goos):
			errorAt(r.File, r.Line, "%s: users cannot be matched on %s yet (a flow's user is not known by uid there): remove them from the rule, or match by applications", label, goos)
		}
		for _, p := range r.Ports {
			if p.err != nil {
				errorAt(r.File, p.Line, "%s: %v", label, p.err)
			}
		}
		err := checkAction(r.Action)
		if r.Action == "" {
			errorAt(r.File, r.Line, "%s has no action: add action: tunnel, direct or block", label)
		} else if err != nil {
			errorAt(r.File, r.Line, "%s: %v", label, err)
		}
		tunnel := r.Action == ActionTunnel
		switch {
		case tunnel && r.Profile == "":
			errorAt(r.File, r.Line, "%s tunnels but names no profile: add profile: with one of %s", label, listOr(names))
		case tunnel && !profiles[r.Profile]:
			errorAt(r.File, r.Line, "%s: unknown profile %q: use one of %s", label, r.Profile, listOr(names))
		case !tunnel && r.Profile != "" && err == nil:
			errorAt(r.File, r.Line, "%s: profile is only used with action: tunnel; remove it or change the action", label)
		}
		if !tunnel && err == nil && (r.HostFromApplication || r.FallbackDirect) {
			errorAt(r.File, r.Line, "%s: host_from_application and fallback_direct only apply to action: tunnel", label)
		}
		c.validateTunnelDown(r, label, tunnel && err == nil, errorAt)
	}
	c.validateDNS(errorAt)
	// After the profiles (static tunnels name one) and DNS (Serve).
	c.validateListeners(errorAt)
	c.validateConsole(errorAt)
	return errors.Join(errs...)
}

func listOr(names []string) string {
	if len(names) == 0 {
		return "the profiles (none is defined: add one under profiles:)"
	}
	return strings.Join(names, ", ")
}

// Hosts lists the host names the rules name, each once.
func (c *Config) Hosts() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range c.Rules {
		for _, d := range r.Destinations {
			if d.Host != "" && !seen[d.Host] {
				seen[d.Host] = true
				out = append(out, d.Host)
			}
		}
	}
	return out
}

// Profile returns the profile called name.
func (c *Config) Profile(name string) (Profile, bool) {
	i := slices.IndexFunc(c.Profiles, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, false
	}
	return c.Profiles[i], true
}

// checkJumpLoops reports profiles that jump through each other in a loop.
func (c *Config) checkJumpLoops(errorAt func(string, int, string, ...any)) {
	jump := map[string]string{}
	for _, p := range c.Profiles {
		jump[p.Name] = p.Jump
	}
	for _, p := range c.Profiles {
		seen := map[string]bool{p.Name: true}
		chain := []string{p.Name}
		for j := jump[p.Name]; j != ""; j = jump[j] {
			chain = append(chain, j)
			if seen[j] {
				errorAt(p.File, p.Line, "profiles jump in a loop: %s", strings.Join(chain, " -> "))
				break
			}
			seen[j] = true
		}
	}
}

// onlyHostFromApplication reports whether every rule using profile takes
// the SSH server from the application (so the profile needs no host), and
// at least one rule uses it.
func (c *Config) onlyHostFromApplication(profile string) bool {
	used := false
	for _, r := range c.Rules {
		if r.Profile == profile {
			if !r.HostFromApplication {
				return false
			}
			used = true
		}
	}
	return used
}
