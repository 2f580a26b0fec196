package dns

import (
	"fmt"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Policy says which names the server answers itself and which it asks of
// the far side. Names are host names, matched without regard to case or
// a final dot.
type Policy struct {
	// Hosts are exact names that tunnel or block rules name; they are
	// answered from the fake-IP pool.
	Hosts []string
	// Domains are answered from the fake-IP pool too: "corp.example" is
	// the domain and every name below it (a rule's *.corp.example).
	Domains []string
	// Through are the resolve_through entries: names in their domains are
	// asked of a resolver in the far network.
	Through []Through
}

// Through sends the names of Domains (each the domain and every name
// below it; "." is every name) to Server, over DNS over TCP on a channel
// of Profile.
type Through struct {
	Domains []string
	Profile string
	Server  netip.AddrPort
}

// How a name is answered.
type verdict int

const (
	forwarded verdict = iota // asked of the upstreams
	fake                     // answered from the fake-IP pool
	through                  // asked of a far-side resolver
)

// policy is a Policy compiled for matching: every name canonical (see
// canon), the root as "".
type policy struct {
	hosts   map[string]bool
	domains map[string]bool
	through map[string]*Through
}

func compile(p Policy) (*policy, error) {
	c := &policy{hosts: map[string]bool{}, domains: map[string]bool{}, through: map[string]*Through{}}
	for _, h := range p.Hosts {
		n, err := policyName(h, false)
		if err != nil {
			return nil, fmt.Errorf("host %q: %w", h, err)
		}
		c.hosts[n] = true
	}
	for _, d := range p.Domains {
		n, err := policyName(d, false)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", d, err)
		}
		c.domains[n] = true
	}
	for i := range p.Through {
		t := p.Through[i]
		where := fmt.Sprintf("resolve_through[%d] (profile %q)", i, t.Profile)
		if t.Profile == "" {
			return nil, fmt.Errorf("resolve_through[%d]: no profile", i)
		}
		if !t.Server.IsValid() || t.Server.Port() == 0 {
			return nil, fmt.Errorf("%s: server %q is not an address and port", where, t.Server)
		}
		if len(t.Domains) == 0 {
			return nil, fmt.Errorf("%s: no domains", where)
		}
		t.Server = netip.AddrPortFrom(t.Server.Addr().Unmap(), t.Server.Port())
		for _, d := range t.Domains {
			n, err := policyName(d, true)
			if err != nil {
				return nil, fmt.Errorf("%s: domain %q: %w", where, d, err)
			}
			if o := c.through[n]; o != nil {
				return nil, fmt.Errorf("%s: domain %q is already sent through profile %q", where, d, o.Profile)
			}
			c.through[n] = &t
		}
	}
	return c, nil
}

// policyName checks a name of the policy and returns it canonical. Only
// resolve_through may name the root ("."), to send every name through.
func policyName(s string, rootOK bool) (string, error) {
	if strings.Contains(s, "*") {
		return "", fmt.Errorf("a wildcard is not a name: a domain already stands for every name below it (write %q)", strings.TrimPrefix(strings.TrimLeft(s, "*"), "."))
	}
	n := canon(s)
	if n == "" {
		if rootOK && s == "." {
			return "", nil
		}
		return "", fmt.Errorf("not a host name")
	}
	if len(n) > 253 {
		return "", fmt.Errorf("longer than 253 characters")
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("not a host name (labels are 1 to 63 characters)")
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("not a host name (%q is not a letter, digit, '-' or '_')", c)
			}
		}
	}
	return n, nil
}

// match says how name (canonical) is answered. For fake, zone is the
// policy's name that holds it (the host, or the domain); for through, t
// is the entry of the closest domain.
//
// The fake policy wins over resolve_through, whatever the domains' depth:
// a fake address is always routed into the TUN, so the flow reaches the
// rule that named the host, while a real internal address is captured
// only if some rule names its network. A name that a tunnel rule names
// must therefore never be answered with a real address.
func (p *policy) match(name string) (v verdict, zone string, t *Through) {
	if p.hosts[name] {
		return fake, name, nil
	}
	for off := 0; ; {
		s := name[off:]
		if p.domains[s] {
			return fake, s, nil
		}
		if t == nil {
			t = p.through[s]
		}
		if s == "" {
			break
		}
		next, end := mdns.NextLabel(name, off)
		if end {
			next = len(name)
		}
		off = next
	}
	if t != nil {
		return through, "", t
	}
	return forwarded, "", nil
}

// canon returns name as the tables hold it: lower case (ASCII, as DNS
// compares names), without the final dot; the root is "". It does not
// allocate for a name already canonical.
func canon(name string) string {
	if mdns.IsFqdn(name) {
		name = name[:len(name)-1]
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return name
}

// reverseAddr returns the address a reverse name (canonical, such as
// 4.3.2.1.in-addr.arpa or its ip6.arpa form) stands for.
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		var b [4]byte
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		for i, l := range labels {
			if l == "" || len(l) > 3 || len(l) > 1 && l[0] == '0' {
				return netip.Addr{}, false
			}
			v := 0
			for j := 0; j < len(l); j++ {
				if l[j] < '0' || l[j] > '9' {
					return netip.Addr{}, false
				}
				v = v*10 + int(l[j]-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			b[3-i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		var b [16]byte
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		for i := 0; i < 32; i++ {
			c := rest[2*i]
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			var v byte
			switch {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// Nibble i counts from the address's last one.
			k := 31 - i
			if k%2 == 0 {
				b[k/2] |= v << 4
			} else {
				b[k/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
