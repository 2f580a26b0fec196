// Package gateway is shunt's built-in SSH gateway: an SSH server
// (golang.org/x/crypto/ssh) that offers no shell and no remote forwarding,
// only direct-tcpip channels, to destinations both the key's permitopen=
// and the gateway's permit list allow. Its parts: the permit list
// (permit.go), authorized_keys with permitopen= and from= (authkeys.go),
// the YAML configuration (config.go), early drop of unauthenticated
// connections (limits.go), the host key (hostkey.go), the server
// (server.go) and Run, which serves a configuration (run.go).
package gateway

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports, Lo <= Hi, both above 0.
type PortRange struct {
	Lo, Hi uint16
}

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Entry is one permit entry: a network and the ports allowed in it. Nil
// Ports means every port.
type Entry struct {
	Net   netip.Prefix
	Ports []PortRange
}

// String writes the entry in the form ParseEntry reads.
func (e Entry) String() string {
	if e.Ports == nil {
		return e.Net.String()
	}
	ps := make([]string, len(e.Ports))
	for i, r := range e.Ports {
		ps[i] = r.String()
	}
	n := e.Net.String()
	if e.Net.Addr().Is6() {
		n = "[" + n + "]"
	}
	return n + ":" + strings.Join(ps, ",")
}

// Allows reports whether the entry covers addr and port.
func (e Entry) Allows(addr netip.Addr, port uint16) bool {
	if !e.Net.Contains(addr.Unmap()) {
		return false
	}
	if e.Ports == nil {
		return true
	}
	for _, r := range e.Ports {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

const entryForm = "write NET[:PORTS], e.g. 10.0.0.0/8:22,80,443-445, 192.0.2.7 or [2001:db8::/32]:443"

// ParseEntry reads NET[:PORTS]. NET is an address or a CIDR prefix; an
// IPv6 one with a port list is written in brackets. A bare address means
// that one address (/32 or /128). PORTS is a comma-separated list of ports
// and ranges (lo-hi); without it every port is allowed.
func ParseEntry(s string) (Entry, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" {
		return Entry{}, fmt.Errorf("empty permit entry: %s", entryForm)
	}
	var netPart, portPart string
	hasPorts := false
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return Entry{}, fmt.Errorf("permit entry %q: missing ]: %s", orig, entryForm)
		}
		netPart = s[1:end]
		rest := s[end+1:]
		switch {
		case rest == "":
		case strings.HasPrefix(rest, ":"):
			portPart, hasPorts = rest[1:], true
		default:
			return Entry{}, fmt.Errorf("permit entry %q: %q after ] (expected :PORTS): %s", orig, rest, entryForm)
		}
	case strings.Count(s, ":") == 1:
		i := strings.IndexByte(s, ':')
		netPart, portPart, hasPorts = s[:i], s[i+1:], true
	default:
		// No colon (IPv4 without ports) or several (bare IPv6, no ports).
		netPart = s
	}
	pfx, err := parseNet(netPart)
	if err != nil {
		return Entry{}, fmt.Errorf("permit entry %q: %v", orig, err)
	}
	e := Entry{Net: pfx}
	if hasPorts {
		ports, err := parsePorts(portPart)
		if err != nil {
			return Entry{}, fmt.Errorf("permit entry %q: %v", orig, err)
		}
		e.Ports = ports
	}
	return e, nil
}

func parseNet(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("no network before the ports: %s", entryForm)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network (%v): %s", s, err, entryForm)
		}
		if p.Addr().Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q has a zone: remove the %%zone", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped IPv6 network: write it as IPv4", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past the /%d: write %s", s, p.Bits(), m)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR network: %s", s, entryForm)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has a zone: remove the %%zone", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePorts(s string) ([]PortRange, error) {
	if s == "" {
		return nil, fmt.Errorf("empty port list after the colon: list ports (22,80,443-445) or drop the colon for every port")
	}
	var out []PortRange
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty item in port list %q: remove the extra comma", s)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		l, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, err
			}
			if h < l {
				return nil, fmt.Errorf("port range %q runs backwards: write %d-%d", item, h, l)
			}
		}
		out = append(out, PortRange{Lo: l, Hi: h})
	}
	return out, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port: ports are numbers from 1 to 65535", s)
	}
	return uint16(n), nil
}

// Permit is the list of destinations the gateway may open. An empty list
// permits nothing.
type Permit []Entry

// ParsePermit parses each entry; the error names every bad one.
func ParsePermit(entries []string) (Permit, error) {
	var p Permit
	var errs []string
	for _, s := range entries {
		e, err := ParseEntry(s)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p = append(p, e)
	}
	if errs != nil {
		return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return p, nil
}

// Allows reports whether some entry covers addr and port.
func (p Permit) Allows(addr netip.Addr, port uint16) bool {
	ok, _ := p.Check(addr, port)
	return ok
}

// Check is Allows, with the reason for a refusal (empty when allowed),
// fit for a log line or the SSH channel-open failure message.
func (p Permit) Check(addr netip.Addr, port uint16) (bool, string) {
	if !addr.IsValid() {
		return false, "no destination address"
	}
	if len(p) == 0 {
		return false, "the gateway permits no destinations (no permit entries)"
	}
	netOK := false
	for _, e := range p {
		if e.Allows(addr, port) {
			return true, ""
		}
		if e.Net.Contains(addr.Unmap()) {
			netOK = true
		}
	}
	dst := netip.AddrPortFrom(addr.Unmap(), port)
	if netOK {
		return false, fmt.Sprintf("%s: port %d is not permitted for that address", dst, port)
	}
	return false, fmt.Sprintf("%s: address is in no permitted network", dst)
}
