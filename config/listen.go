package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

// Ways into shunt besides the TUN: a SOCKS and an HTTP proxy whose
// connections go through the rules, and static tunnels (ssh -L style).

// SOCKSUser is a user the SOCKS listener serves (RFC 1929 user name and
// password). Exactly one of PasswordHash (bcrypt, as `htpasswd -nB NAME`
// makes it) and PasswordFile (a file holding the password, e.g. a
// container's secret) is set.
type SOCKSUser struct {
	Name         string `yaml:"name"`
	PasswordHash string `yaml:"password_hash"`
	PasswordFile string `yaml:"password_file"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the item's line.
func (u *SOCKSUser) UnmarshalYAML(n *yaml.Node) error {
	type plain SOCKSUser
	u.Line = n.Line
	return n.Decode((*plain)(u))
}

// StaticTunnel is a listener whose every connection goes to one
// destination through one profile, as ssh -L does: the rules are not
// consulted.
type StaticTunnel struct {
	// Listen is the local address and port ("127.0.0.1:1143").
	Listen string `yaml:"listen"`
	// Destination is host:port on the far side; a name is resolved by
	// the SSH server.
	Destination string `yaml:"destination"`
	Profile     string `yaml:"profile"`
	// AllowFrom are the networks whose hosts may connect besides this
	// host's loopback (a listener on another address needs it).
	AllowFrom []string `yaml:"allow_from"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the item's line.
func (t *StaticTunnel) UnmarshalYAML(n *yaml.Node) error {
	type plain StaticTunnel
	t.Line = n.Line
	return n.Decode((*plain)(t))
}

// Listener kinds.
const (
	ListenSOCKS  = "socks"
	ListenHTTP   = "http"
	ListenStatic = "static"
)

// Listener is one listening address, validated (Config.Listeners).
type Listener struct {
	Kind string // ListenSOCKS, ListenHTTP or ListenStatic
	Addr netip.AddrPort
	// AllowFrom are the networks whose clients may connect besides
	// loopback.
	AllowFrom []netip.Prefix
	// Host and Port are a static tunnel's destination (Host a name or an
	// address), Profile its profile.
	Host    string
	Port    uint16
	Profile string

	File string
	Line int
}

// Name is how logs and status name the listener: "socks 127.0.0.1:1080".
func (l Listener) Name() string { return l.Kind + " " + l.Addr.String() }

// Listeners are the listeners the configuration asks for, in the order
// socks, http, then the static tunnels.
func (c *Config) Listeners() []Listener { return slices.Clone(c.listeners) }

// TUNEnabled reports whether shunt captures through a TUN device
// (tun.enabled, true unless set to false).
func (t TUN) TUNEnabled() bool { return t.Enabled == nil || *t.Enabled }

// validateListeners checks the listener keys and builds Listeners.
func (c *Config) validateListeners(errorAt func(string, int, string, ...any)) {
	c.listeners = nil
	allow, ok := parseAllowFrom(c.AllowFrom)
	if !ok {
		errorAt(c.listenFile, c.allowLine, "allow_from %v: write networks or addresses, e.g. [192.168.50.0/24, 10.0.0.7]", c.AllowFrom)
	}
	seen := map[netip.AddrPort]string{}
	add := func(kind, spec, file string, line int, allowFrom []netip.Prefix, key string) (Listener, bool) {
		ap, err := parseListen(spec)
		if err != nil {
			errorAt(file, line, "%s %q: %v", key, spec, err)
			return Listener{}, false
		}
		if where, dup := seen[ap]; dup {
			errorAt(file, line, "%s %s: %s listens there already: use another port", key, ap, where)
			return Listener{}, false
		}
		seen[ap] = key
		if !ap.Addr().IsLoopback() && len(allowFrom) == 0 {
			errorAt(file, line, "%s %s is not a loopback address: add allow_from: with the networks whose hosts may use it (e.g. [192.168.50.0/24]), so that it is not open to everyone", key, ap)
		}
		return Listener{Kind: kind, Addr: ap, AllowFrom: allowFrom, File: file, Line: line}, true
	}
	for _, s := range c.SOCKSListen {
		if l, ok := add(ListenSOCKS, s, c.listenFile, c.socksLine, allow, "socks_listen"); ok {
			c.listeners = append(c.listeners, l)
		}
	}
	for _, s := range c.HTTPProxyListen {
		if l, ok := add(ListenHTTP, s, c.listenFile, c.httpLine, allow, "http_proxy_listen"); ok {
			c.listeners = append(c.listeners, l)
		}
	}
	if len(c.SOCKSUsers) > 0 && len(c.SOCKSListen) == 0 {
		errorAt(c.SOCKSUsers[0].File, c.SOCKSUsers[0].Line, "socks_users without socks_listen: add socks_listen: 127.0.0.1:1080, or remove socks_users")
	}
	names := map[string]bool{}
	for i := range c.SOCKSUsers {
		u := &c.SOCKSUsers[i]
		switch {
		case u.Name == "" || len(u.Name) > 255:
			errorAt(u.File, u.Line, "socks_users: name must be 1 to 255 bytes (RFC 1929)")
		case names[u.Name]:
			errorAt(u.File, u.Line, "socks_users: %q is listed twice: remove one", u.Name)
		}
		names[u.Name] = true
		switch {
		case (u.PasswordHash == "") == (u.PasswordFile == ""):
			errorAt(u.File, u.Line, "socks_users %q: give password_hash (bcrypt, e.g. from htpasswd -nB %s) or password_file, one of the two", u.Name, u.Name)
		case u.PasswordHash != "":
			if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
				errorAt(u.File, u.Line, "socks_users %q: password_hash is not a bcrypt hash ($2a$, $2b$ or $2y$...): make one with htpasswd -nB %s", u.Name, u.Name)
			}
		default:
			u.PasswordFile = c.expandHome(u.PasswordFile)
		}
	}
	for i := range c.StaticTunnels {
		t := &c.StaticTunnels[i]
		key := fmt.Sprintf("static_tunnels[%d].listen", i)
		if t.Listen == "" {
			errorAt(t.File, t.Line, "static tunnel without listen: add listen: 127.0.0.1:PORT")
			continue
		}
		tallow, ok := parseAllowFrom(t.AllowFrom)
		if !ok {
			errorAt(t.File, t.Line, "static tunnel %s: allow_from %v: write networks or addresses, e.g. [192.168.50.0/24]", t.Listen, t.AllowFrom)
		}
		l, ok := add(ListenStatic, t.Listen, t.File, t.Line, tallow, key)
		if !ok {
			continue
		}
		host, port, err := splitDestination(t.Destination)
		if err != nil {
			errorAt(t.File, t.Line, "static tunnel %s: destination %q: %v", t.Listen, t.Destination, err)
			continue
		}
		if _, ok := c.Profile(t.Profile); !ok {
			errorAt(t.File, t.Line, "static tunnel %s: profile %q is not defined: use one of %s", t.Listen, t.Profile, listOr(c.profileNames()))
			continue
		}
		l.Host, l.Port, l.Profile = host, port, t.Profile
		c.listeners = append(c.listeners, l)
	}
	if !c.TUN.TUNEnabled() {
		line := c.TUN.Line
		switch {
		case len(c.SOCKSListen)+len(c.HTTPProxyListen)+len(c.StaticTunnels) == 0:
			errorAt(c.TUN.File, line, "tun.enabled is false and nothing else is served: add socks_listen, http_proxy_listen or static_tunnels, or remove enabled: false")
		case c.DNS.Serve:
			errorAt(c.TUN.File, line, "tun.enabled is false, but split DNS answers fake addresses that only the TUN carries: remove the dns section, or enable the TUN (SOCKS and HTTP proxy clients send names, which need no DNS here)")
		case c.KillSwitch:
			errorAt(c.TUN.File, line, "tun.enabled is false, but kill_switch guards the TUN's routes: remove kill_switch, or enable the TUN")
		}
	}
}

func (c *Config) profileNames() []string {
	out := make([]string, len(c.Profiles))
	for i, p := range c.Profiles {
		out[i] = p.Name
	}
	return out
}

// parseListen parses a listen address: an IP address and a port.
func parseListen(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("write ADDRESS:PORT, e.g. 127.0.0.1:1080 or [::1]:1080")
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address: listen on an address, e.g. 127.0.0.1 (0.0.0.0 for every IPv4 address)", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.AddrPort{}, fmt.Errorf("port %q is not from 1 to 65535", port)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(n)), nil
}

// CheckDestination reports whether s is a static tunnel's destination
// (HOST:PORT) that shunt accepts, and if not, why (for converters that
// must write only what shunt check accepts).
func CheckDestination(s string) error {
	_, _, err := splitDestination(s)
	return err
}

// splitDestination parses a static tunnel's host:port.
func splitDestination(s string) (string, uint16, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("write HOST:PORT, e.g. mail.corp.example:143")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not from 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err != nil && !validHostName(strings.ToLower(strings.TrimSuffix(host, "."))) {
		return "", 0, fmt.Errorf("%q is not a host name or address", host)
	}
	return host, uint16(n), nil
}

// parseAllowFrom parses networks and addresses.
func parseAllowFrom(list []string) ([]netip.Prefix, bool) {
	var out []netip.Prefix
	ok := true
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		} else {
			ok = false
		}
	}
	return out, ok
}

// UserControlSocket is the control socket of a shunt that runs as an
// ordinary user without a TUN (control.socket unset):
// $XDG_RUNTIME_DIR/shunt/shunt.sock, else ~/.local/state/shunt/shunt.sock.
// Empty when neither is known.
func UserControlSocket(getenv func(string) string) string {
	if d := getenv("XDG_RUNTIME_DIR"); strings.HasPrefix(d, "/") {
		return filepath.Join(d, "shunt", "shunt.sock")
	}
	if d := userStateDir(getenv); d != "" {
		return filepath.Join(d, "shunt.sock")
	}
	return ""
}

// userStateDir is the state directory of a shunt that runs as an ordinary
// user without a TUN: $XDG_STATE_HOME/shunt, else ~/.local/state/shunt.
func userStateDir(getenv func(string) string) string {
	if d := getenv("XDG_STATE_HOME"); strings.HasPrefix(d, "/") {
		return filepath.Join(d, "shunt")
	}
	if h := getenv("HOME"); strings.HasPrefix(h, "/") {
		return filepath.Join(h, ".local", "state", "shunt")
	}
	return ""
}

// unprivileged reports whether the configuration runs shunt as an
// ordinary user: no TUN, and not root. Its defaults are then the user's
// (UserControlSocket, userStateDir), not the machine's.
func (c *Config) unprivileged() bool {
	return !c.TUN.TUNEnabled() && c.machine.Geteuid() != 0
}
