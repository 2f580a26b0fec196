package tectia

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/shunt-dev/shunt/config"
)

// Static tunnels: <static-tunnels><tunnel .../></static-tunnels> and a
// profile's <tunnels><local-tunnel .../></tunnels> (ssh -L style
// listeners), and Tectia's SOCKS listener (<tunnel type="socks-proxy">,
// whose connections the filter engine decides: shunt's socks_listen).
//
// The tunnel element's attributes (Tectia Client's "Automatic Tunnels"
// page and ssh-broker-config(5)): type, tcp or ftp; listen-port;
// listen-address, optional, usually 127.0.0.1; dst-host and dst-port;
// allow-relay, whether hosts other than the client may connect, no unless
// set ("By default, only local connections are allowed"); profile. Tectia
// listens from its start and opens the connection on first use, as shunt's
// static_tunnels do. A profile's local tunnels are the same, without the
// profile attribute, but Tectia listens on them only while a connection
// with the profile is open; shunt listens from its start.

// tunnel is a converted listener.
type tunnel struct {
	line     int
	socks    bool // a SOCKS listener, not a static tunnel
	listen   netip.AddrPort
	dest     string // host:port, for a static tunnel
	ref      string // the Tectia profile reference (static-tunnels)
	refLine  int
	owner    *profile // the profile a local-tunnel was written in
	profile  *profile // resolved
	relay    bool     // allow-relay="yes"
	allow    []string // allow_from
	inProf   bool     // from a profile's local-tunnel
	dropped  bool     // not converted (a problem was reported)
	describe string
}

// readStaticTunnels reads <static-tunnels>.
func (c *converter) readStaticTunnels(e *element) {
	c.noAttrs(e)
	c.noText(e)
	for _, t := range e.Children {
		if t.Name != "tunnel" {
			c.problem(t.Line, "<%s> inside <static-tunnels> is not understood", t.Name)
			continue
		}
		c.readTunnel(t, nil)
	}
}

// readProfileTunnels reads a profile's <tunnels> (or a local-tunnel or
// remote-tunnel written directly in it). p is nil in default-settings.
func (c *converter) readProfileTunnels(e *element, where string, p *profile) {
	var items []*element
	switch e.Name {
	case "tunnels":
		c.noAttrs(e)
		c.noText(e)
		items = e.Children
	default:
		items = []*element{e}
	}
	for _, t := range items {
		switch {
		case t.Name == "remote-tunnel":
			c.problem(t.Line, "%s: remote tunnel %s: shunt does not listen on the server's side (ssh -R); keep ssh -R for it", where, describeTunnel(t))
		case t.Name != "local-tunnel":
			c.problem(t.Line, "%s: <%s> inside <tunnels> is not understood", where, t.Name)
		case p == nil:
			c.problem(t.Line, "%s: local tunnel %s: in default-settings it would be every profile's, on one port; write it in the profile it goes through (shunt's static_tunnels name a profile)", where, describeTunnel(t))
		default:
			c.readTunnel(t, p)
		}
	}
}

// readTunnel reads one <tunnel> (owner nil) or a profile's <local-tunnel>.
func (c *converter) readTunnel(e *element, owner *profile) {
	c.noText(e)
	c.noChildren(e)
	t := &tunnel{line: e.Line, owner: owner, inProf: owner != nil, describe: describeTunnel(e)}
	what := "static tunnel " + t.describe
	if owner != nil {
		what = fmt.Sprintf("profile %q: local tunnel %s", owner.name, t.describe)
	}
	fail := func(line int, format string, args ...any) {
		c.problem(line, "%s: %s", what, fmt.Sprintf(format, args...))
		t.dropped = true
	}
	var typ, host, dstPort, listenAddr, listenPort string
	typLine, portLine, addrLine, dstLine := e.Line, e.Line, e.Line, e.Line
	for _, a := range e.Attrs {
		v := strings.TrimSpace(a.Value)
		switch a.Name {
		case "type":
			typ, typLine = strings.ToLower(v), a.Line
		case "listen-port":
			listenPort, portLine = v, a.Line
		case "listen-address":
			listenAddr, addrLine = v, a.Line
		case "dst-host":
			host, dstLine = v, a.Line
		case "dst-port":
			dstPort = v
			if host == "" {
				dstLine = a.Line
			}
		case "allow-relay":
			b, ok := parseBool(v)
			if !ok {
				fail(a.Line, "allow-relay %q is not yes or no", a.Value)
				continue
			}
			t.relay = b
		case "profile":
			if owner != nil {
				fail(a.Line, "attribute profile of <local-tunnel> is not understood (the tunnel goes through the profile it is written in)")
				continue
			}
			t.ref, t.refLine = v, a.Line
		default:
			fail(a.Line, "attribute %s of <%s> is not understood", a.Name, e.Name)
		}
	}
	switch typ {
	case "", "tcp":
	case "socks-proxy":
		if owner != nil {
			fail(typLine, "a SOCKS listener inside a profile has no shunt equivalent: shunt's socks_listen decides each connection by the rules")
		} else {
			t.socks = true
		}
	case "ftp":
		fail(typLine, "an FTP tunnel also carries FTP's data connections, which shunt does not follow; a tcp tunnel to port 21 would carry the control connection only (use passive FTP through a SOCKS listener, or SFTP)")
	default:
		fail(typLine, "type %q is not tcp, ftp or socks-proxy", typ)
	}

	// Where it listens: Tectia's listen-address, or loopback unless
	// allow-relay lets other hosts in (then every address).
	port, err := strconv.ParseUint(listenPort, 10, 16)
	switch {
	case listenPort == "":
		fail(e.Line, "no listen-port")
	case err != nil || port == 0:
		fail(portLine, "listen-port %q is not a port (1-65535)", listenPort)
	}
	var addr netip.Addr
	switch {
	case listenAddr == "" && t.relay:
		addr = netip.IPv4Unspecified()
	case listenAddr == "" || strings.EqualFold(listenAddr, "localhost"):
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		a, err := netip.ParseAddr(strings.Trim(listenAddr, "[]"))
		if err != nil || a.Zone() != "" {
			fail(addrLine, "listen-address %q is not an IP address", listenAddr)
		}
		addr = a.Unmap()
	}
	if !t.dropped {
		t.listen = netip.AddrPortFrom(addr, uint16(port))
		switch {
		case t.relay:
			t.allow = []string{"0.0.0.0/0"}
			if addr.Is6() {
				t.allow = []string{"::/0"}
			}
			c.note(e.Line, "%s: allow-relay lets any host connect; the converted listener has allow_from: %s: narrow it to the networks that need it", what, t.allow[0])
		case !addr.IsLoopback():
			// Only this host may connect; it reaches a local address
			// from that same address.
			t.allow = []string{netip.PrefixFrom(addr, addr.BitLen()).String()}
			c.note(e.Line, "%s: without allow-relay only this host may connect; shunt lets in connections from %s only (this host's own, to that address)", what, addr)
		}
		if port < 1024 {
			c.note(portLine, "%s: port %d is below 1024: shunt can listen there when it runs as root (as shunt up with a TUN does); with tun.enabled: false, as an ordinary user, choose a port above 1023", what, port)
		}
	}

	if t.socks {
		if host != "" || dstPort != "" || t.ref != "" {
			fail(dstLine, "a SOCKS listener with dst-host, dst-port or profile has no shunt equivalent: shunt's socks_listen decides each connection by the rules")
		}
	} else if typ == "" || typ == "tcp" {
		n, err := strconv.ParseUint(dstPort, 10, 16)
		dest := net.JoinHostPort(strings.Trim(host, "[]"), strconv.FormatUint(n, 10))
		switch {
		case host == "":
			fail(dstLine, "no dst-host")
		case dstPort == "":
			fail(dstLine, "no dst-port")
		case err != nil || n == 0:
			fail(dstLine, "dst-port %q is not a port (1-65535)", dstPort)
		case config.CheckDestination(dest) != nil:
			fail(dstLine, "dst-host %q is not a host name or address", host)
		default:
			t.dest = dest
		}
		if owner == nil && t.ref == "" {
			fail(e.Line, "no profile to go through")
		}
	}
	if t.inProf {
		c.note(e.Line, "%s: Tectia listens on a profile's local tunnel while a connection with the profile is open; shunt listens from its start and opens the connection on first use", what)
	}
	c.tunnels = append(c.tunnels, t)
}

// resolveTunnels ties each static tunnel to its profile (once the
// profiles' gateways are resolved) and drops listeners that would collide.
func (c *converter) resolveTunnels() {
	for _, t := range c.tunnels {
		if t.dropped || t.socks {
			continue
		}
		what := "static tunnel " + t.describe
		p, line := t.owner, t.line
		if p == nil {
			p, line = c.lookup(t.ref), t.refLine
			if p == nil {
				c.problem(line, "%s: profile %q names no profile", what, t.ref)
				t.dropped = true
				continue
			}
		} else {
			what = fmt.Sprintf("profile %q: local tunnel %s", p.name, t.describe)
		}
		switch {
		case p.broken:
			c.problem(line, "%s: its profile %q (line %d) has a problem", what, p.name, p.line)
			t.dropped = true
		case p.host == "":
			c.problem(line, "%s: its profile %q has no host: a static tunnel goes to one server, so give the profile a host", what, p.name)
			t.dropped = true
		default:
			t.profile = p
		}
	}
	// Two listeners on one address and port, or on a port that an
	// unspecified address (every address) already holds, cannot both be.
	var kept []*tunnel
	for _, t := range c.tunnels {
		if t.dropped {
			continue
		}
		i := slices.IndexFunc(kept, func(k *tunnel) bool {
			return k.listen.Port() == t.listen.Port() &&
				(k.listen.Addr() == t.listen.Addr() || k.listen.Addr().IsUnspecified() || t.listen.Addr().IsUnspecified())
		})
		if i >= 0 {
			c.problem(t.line, "tunnel %s: %s is taken by the tunnel at line %d; give one of them another listen-port", t.describe, t.listen, kept[i].line)
			t.dropped = true
			continue
		}
		kept = append(kept, t)
	}
}

// emitTunnels writes socks_listen, allow_from and static_tunnels.
func (c *converter) emitTunnels(b *bytes.Buffer) {
	file := oneLine(c.file)
	var socks, static []*tunnel
	for _, t := range c.tunnels {
		switch {
		case t.dropped:
		case t.socks:
			socks = append(socks, t)
		default:
			static = append(static, t)
		}
	}
	if len(socks) > 0 {
		b.WriteString("# Tectia's SOCKS listener: its connections are decided by the rules below.\n")
		var allow []string
		for _, t := range socks {
			fmt.Fprintf(b, "# %s:%d\n", file, t.line)
			for _, a := range t.allow {
				if !slices.Contains(allow, a) {
					allow = append(allow, a)
				}
			}
		}
		if len(socks) == 1 {
			fmt.Fprintf(b, "socks_listen: %s\n", scalar(socks[0].listen.String()))
		} else {
			b.WriteString("socks_listen:\n")
			for _, t := range socks {
				fmt.Fprintf(b, "  - %s\n", scalar(t.listen.String()))
			}
		}
		if len(allow) > 0 {
			fmt.Fprintf(b, "allow_from: %s # from allow-relay and listen-address: check it\n", flow(allow, scalar))
		}
	}
	if len(static) == 0 {
		return
	}
	b.WriteString("static_tunnels:\n")
	for _, t := range static {
		fmt.Fprintf(b, "  # %s:%d\n", file, t.line)
		fmt.Fprintf(b, "  - listen: %s\n", scalar(t.listen.String()))
		fmt.Fprintf(b, "    destination: %s\n", scalar(t.dest))
		fmt.Fprintf(b, "    profile: %s\n", scalar(t.profile.name))
		switch {
		case t.relay:
			fmt.Fprintf(b, "    allow_from: %s # allow-relay: any host; narrow it to the networks that need it\n", flow(t.allow, scalar))
		case len(t.allow) > 0:
			fmt.Fprintf(b, "    allow_from: %s # only this host, as without allow-relay\n", flow(t.allow, scalar))
		}
	}
}
