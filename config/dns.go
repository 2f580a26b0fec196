package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// DNS modes: how shunt points the system's resolver at its DNS server.
const (
	DNSAuto        = "auto"             // the first of the below that fits this machine
	DNSResolved    = "systemd-resolved" // per-link DNS and routing domains on the TUN
	DNSResolvConf  = "resolv.conf"      // shunt's server becomes the nameserver
	DNSResolverDir = "resolver-dir"     // macOS: a file per routing domain in /etc/resolver
	DNSNRPT        = "nrpt"             // Windows: Name Resolution Policy Table rules
	DNSOff         = "off"              // no change to the OS; the server still listens
)

// DNS configures split DNS: shunt's own DNS server on the TUN side, which
// answers the names that tunnel and block rules name with fake IPs (the
// flow then carries the name, and the SSH server resolves it), resolves
// resolve_through domains through a resolver on the far side, and forwards
// every other name to the resolvers the system had.
type DNS struct {
	// Mode is one of the DNS* modes. Empty after validation never: with
	// no dns section it is auto when a tunnel or block rule names a host
	// name or a domain, and off otherwise (and then Serve is false).
	Mode string `yaml:"mode"`
	// FakeIPs are the ranges fake addresses come from, at most one per
	// address family is not required; they must not overlap each other,
	// shunt's own addresses or a network a rule names.
	FakeIPs []FakeRange `yaml:"fake_ips"`
	// ResolveThrough lists domains resolved by a resolver inside the far
	// network, asked over a channel of a profile.
	ResolveThrough []ResolveThrough `yaml:"resolve_through"`
	// Enabled false turns split DNS off whatever the rules name: host
	// names in rules are then resolved by the system's resolvers and
	// their addresses routed, as without a DNS server (for applications
	// that resolve names themselves, such as browsers with DNS over
	// HTTPS). Unset: on when the section is there or a rule needs it.
	Enabled *bool `yaml:"enabled"`

	// Serve says whether shunt's DNS server runs at all; false only
	// without a dns section and with no rule that needs one.
	Serve bool `yaml:"-"`

	Line    int    `yaml:"-"`
	File    string `yaml:"-"`
	present bool
}

// UnmarshalYAML records the line of the section.
func (d *DNS) UnmarshalYAML(n *yaml.Node) error {
	type plain DNS
	d.Line, d.present = n.Line, true
	return n.Decode((*plain)(d))
}

// FakeRange is a network of fake addresses, as written.
type FakeRange struct {
	Prefix netip.Prefix
	scalar
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (f *FakeRange) UnmarshalYAML(n *yaml.Node) error {
	f.scalar = scalar{Raw: n.Value, Line: n.Line}
	if n.Kind != yaml.ScalarNode {
		f.err = fmt.Errorf("a fake-IP range is a network, e.g. %s", netlayout.Fake4)
		return nil
	}
	p, err := netip.ParsePrefix(strings.TrimSpace(n.Value))
	switch {
	case err != nil:
		f.err = fmt.Errorf("fake-IP range %q is not a network: write e.g. %s or %s", n.Value, netlayout.Fake4, netlayout.Fake6)
	case p.Addr().Is4In6() || p.Addr().Zone() != "":
		f.err = fmt.Errorf("fake-IP range %q: write an IPv4 network as such, e.g. %s", n.Value, netlayout.Fake4)
	case p.Masked() != p:
		f.err = fmt.Errorf("fake-IP range %q has host bits set: write %s", n.Value, p.Masked())
	case p.Addr().Is4() && p.Bits() > 28, p.Addr().Is6() && p.Bits() > 120:
		f.err = fmt.Errorf("fake-IP range %q is too small to hand out addresses from: use at most /28 (IPv4) or /120 (IPv6), e.g. %s", n.Value, netlayout.Fake4)
	}
	f.Prefix = p
	return nil
}

// ResolveThrough sends the names of Domains to a resolver on the far side.
type ResolveThrough struct {
	// Domains: each domain, and every name under it.
	Domains []string `yaml:"domains"`
	// Profile is the connection profile whose channel reaches Server.
	Profile string `yaml:"profile"`
	// Server is the resolver's address:port as the SSH server reaches it
	// (port 53 when none is written).
	Server string `yaml:"server"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the line of the item.
func (r *ResolveThrough) UnmarshalYAML(n *yaml.Node) error {
	type plain ResolveThrough
	r.Line = n.Line
	return n.Decode((*plain)(r))
}

// Prefixes are the fake-IP ranges in force.
func (d *DNS) Prefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(d.FakeIPs))
	for _, f := range d.FakeIPs {
		out = append(out, f.Prefix)
	}
	return out
}

// namesRules reports whether a tunnel or block rule names a host name or
// a domain: those names need fake IPs (or resolve only on the far side).
func (c *Config) namesRules() bool {
	for _, r := range c.Rules {
		if r.Action != ActionTunnel && r.Action != ActionBlock {
			continue
		}
		for _, d := range r.Destinations {
			if d.Host != "" || d.Domain != "" {
				return true
			}
		}
	}
	return false
}

// validateDNS fills the DNS defaults and checks the section.
func (c *Config) validateDNS(errorAt func(string, int, string, ...any)) {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
		if d := userStateDir(c.machine.Getenv); d != "" && c.unprivileged() {
			c.StateDir = d
		}
	} else if !filepath.IsAbs(c.StateDir) {
		errorAt(c.stateDirFile, c.stateDirLine, "state_dir %q is not an absolute path: write e.g. %s", c.StateDir, DefaultStateDir)
	}
	d := &c.DNS
	file := d.File
	disabled := d.Enabled != nil && !*d.Enabled
	switch d.Mode {
	case "":
		if disabled {
			d.Mode = DNSOff
		} else if d.present || c.namesRules() && c.TUN.TUNEnabled() {
			// Without a TUN, rules that name hosts need no DNS: the
			// proxies' clients send the names.
			d.Mode, d.Serve = DNSAuto, true
		} else {
			d.Mode = DNSOff
		}
	case DNSAuto, DNSResolved, DNSResolvConf, DNSResolverDir, DNSNRPT, DNSOff:
		d.Serve = !disabled
		if disabled && d.Mode != DNSOff {
			errorAt(file, d.Line, "dns.mode %s with enabled: false: split DNS is off, so nothing points the system's resolver at shunt; remove one of them", d.Mode)
		}
	default:
		errorAt(file, d.Line, "dns.mode %q is not a mode: use auto, systemd-resolved, resolv.conf, resolver-dir (macOS), nrpt (Windows) or off", d.Mode)
	}
	if len(d.FakeIPs) == 0 {
		for _, p := range netlayout.DefaultFakeRanges() {
			d.FakeIPs = append(d.FakeIPs, FakeRange{Prefix: p, scalar: scalar{Raw: p.String(), Line: d.Line}})
		}
	}
	for i, f := range d.FakeIPs {
		if f.err != nil {
			errorAt(file, f.Line, "dns.fake_ips: %v", f.err)
			continue
		}
		for _, own := range netlayout.Own() {
			if f.Prefix.Overlaps(own) {
				errorAt(file, f.Line, "dns.fake_ips: %s overlaps %s, which holds shunt's own addresses (the TUN's %s and %s, the DNS server's %s and %s): choose another range, e.g. %s or %s",
					f.Prefix, own, netlayout.TUN4, netlayout.TUN6, netlayout.DNS4, netlayout.DNS6, netlayout.Fake4, netlayout.Fake6)
			}
		}
		for _, g := range d.FakeIPs[:i] {
			if g.err == nil && f.Prefix.Overlaps(g.Prefix) {
				errorAt(file, f.Line, "dns.fake_ips: %s overlaps %s, listed before it: list each range once", f.Prefix, g.Prefix)
			}
		}
		for ri, r := range c.Rules {
			for _, dest := range r.Destinations {
				for _, p := range dest.Prefixes {
					// A rule for everything (0.0.0.0/0, ::/0) covers every
					// range; it does not make the fake addresses ambiguous.
					if p.Bits() > 0 && p.Overlaps(f.Prefix) {
						errorAt(file, f.Line, "dns.fake_ips: %s overlaps %s, which rule #%d names (%s:%d): a fake address must never be a real destination; choose a range no rule names, e.g. %s",
							f.Prefix, p, ri+1, r.File, dest.Line, suggestFake(f.Prefix))
					}
				}
			}
		}
	}
	if disabled && len(d.ResolveThrough) > 0 {
		errorAt(file, d.Line, "dns.resolve_through needs split DNS, which enabled: false turns off: remove one of them")
	}
	profiles := map[string]bool{}
	var names []string
	for _, p := range c.Profiles {
		profiles[p.Name] = true
		names = append(names, p.Name)
	}
	seen := map[string]int{}
	for i := range d.ResolveThrough {
		rt := &d.ResolveThrough[i]
		label := fmt.Sprintf("dns.resolve_through #%d", i+1)
		f := rt.File
		if f == "" {
			f = file
		}
		if len(rt.Domains) == 0 {
			errorAt(f, rt.Line, "%s names no domains: add domains: [corp.example] (each domain and every name under it)", label)
		}
		for j, dom := range rt.Domains {
			n := strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(dom)), "*."), ".")
			if !validHostName(n) || looksNumeric(n) {
				errorAt(f, rt.Line, "%s: %q is not a domain name: write e.g. corp.example (it covers every name under it)", label, dom)
				continue
			}
			if k, dup := seen[n]; dup {
				errorAt(f, rt.Line, "%s: domain %s is already resolved through #%d: list each domain once", label, n, k)
			}
			seen[n] = i + 1
			rt.Domains[j] = n
		}
		switch {
		case rt.Profile == "":
			errorAt(f, rt.Line, "%s names no profile: add profile: with one of %s", label, listOr(names))
		case !profiles[rt.Profile]:
			errorAt(f, rt.Line, "%s: unknown profile %q: use one of %s", label, rt.Profile, listOr(names))
		}
		server, err := resolverAddress(rt.Server)
		if err != nil {
			errorAt(f, rt.Line, "%s: %v", label, err)
		}
		rt.Server = server
	}
}

// resolverAddress checks a far-side resolver's address and adds port 53
// when none is written. It is an IP address: the resolver that names are
// asked of cannot itself need a name.
func resolverAddress(s string) (string, error) {
	const fix = "write the resolver's IP address as the SSH server reaches it, e.g. 10.1.0.53 or 10.1.0.53:53"
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("no server: %s", fix)
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 53).String(), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("server %q is not an IP address or address:port: %s", s, fix)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("server %q: port %q is not a port from 1 to 65535: %s", s, port, fix)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("server %q: %q is not an IP address: %s", s, host, fix)
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(mustAtoi(port))).String(), nil
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

// suggestFake names a default range of p's family.
func suggestFake(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4() {
		return netlayout.Fake4
	}
	return netlayout.Fake6
}

// keyLine is the line of a top-level key, 0 when it is absent.
func keyLine(root *yaml.Node, key string) int {
	if root == nil || len(root.Content) == 0 {
		return 0
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == key {
			return top.Content[i].Line
		}
	}
	return 0
}
