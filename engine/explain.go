package engine

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/router"
)

// Explanation is what shunt does with a flow, as the data path decides it.
type Explanation struct {
	// Captured: the destination is routed to the TUN device, so shunt sees
	// the flow and the rules decide it; otherwise it takes the host's
	// normal route whatever the rules say. A loopback destination never
	// is (the kernel delivers it locally).
	Captured bool
	Loopback bool
	// Prefix is the captured route the destination is in, and CaptureRule
	// the label of the tunnel or block rule whose destinations route it.
	Prefix      netip.Prefix
	CaptureRule string

	// Decision is the rules' verdict on the flow once captured (the same
	// function the router calls), and Steps why each rule up to the match
	// does or does not match.
	Decision router.Decision
	Steps    []router.Step

	// For a tunnel: the profile, its SSH server ("alice@gw port 22"; the
	// destination itself for a host-from-application rule), and how the
	// broker reaches it (broker.Route), or "no route: " and why not.
	Profile string
	Server  string
	Route   string
	// TunnelDown says what happens to a tunnelled flow when its tunnel
	// cannot be set up (the rule's on_tunnel_down).
	TunnelDown string
	// Stopped says what happens to a flow to the destination while shunt
	// is not running (kill_switch); empty for one never captured.
	Stopped string
}

// Explain decides f by the plan; resolved gives a host name's addresses
// (nil: none has any), for the routes and the rules that name hosts.
func (p *Plan) Explain(f router.Flow, resolved func(host string) []netip.Addr) Explanation {
	var e Explanation
	p.capture(&e, f.Dst.Addr().Unmap(), resolved)
	if e.Captured || f.Host != "" {
		e.Stopped = p.whenStopped(f.Dst.Addr().Unmap())
	}
	e.Decision, e.Steps = p.Ruleset.Explain(f)
	d := e.Decision
	if d.Rule == nil || d.Action != router.Tunnel {
		return e
	}
	switch d.Rule.OnTunnelDown {
	case router.TunnelDownDirect:
		e.TunnelDown = "if the tunnel cannot be set up, shunt connects the flow directly, in the clear, and logs a warning (on_tunnel_down: direct)"
	default:
		e.TunnelDown = "if the tunnel cannot be set up, the application sees a refused connection: nothing goes in the clear (on_tunnel_down: block, the default)"
	}
	var prof broker.Profile
	for _, bp := range p.Profiles {
		if bp.Name == d.Rule.Profile {
			prof = bp
		}
	}
	e.Profile = prof.Name
	server := ""
	if d.Rule.HostFromApplication {
		server = f.Dst.Addr().Unmap().String()
		e.Server = fmt.Sprintf("%s@%s port %d", prof.User, server, prof.Port)
		if f.Host != "" {
			// A flow by name: the SSH server is the name, and the
			// broker looks it up as it dials, with the resolvers the
			// system had (never shunt's own, which would answer with
			// the fake address), or its jump host resolves it.
			server = f.Host
			how := "its address from the resolvers the system had before shunt (shunt's DNS server gives only a fake one)"
			if prof.Jump != "" {
				how = "resolved by the jump host of profile " + prof.Jump
			}
			e.Server = fmt.Sprintf("%s@%s port %d, %s", prof.User, server, prof.Port, how)
		}
	} else {
		e.Server = fmt.Sprintf("%s@%s port %d", prof.User, strings.Join(prof.Hosts, " or "), prof.Port)
	}
	route, err := broker.Route(p.Profiles, p.ProxyRules, d.Rule.Profile, server)
	if err != nil {
		route = "no route: " + err.Error()
	}
	e.Route = route
	return e
}

// capture finds whether the kernel routes addr to the TUN device, and
// which rule's destinations make it do so.
func (p *Plan) capture(e *Explanation, addr netip.Addr, resolved func(host string) []netip.Addr) {
	if addr.IsLoopback() {
		e.Loopback = true
		return
	}
	for i := range p.Rules {
		if p.Rules[i].Action == router.Direct {
			continue
		}
		for _, pfx := range router.Compile(p.Rules[i : i+1]).Captured(resolved) {
			if pfx.Contains(addr) {
				e.Captured, e.Prefix, e.CaptureRule = true, pfx, p.Rules[i].Label(i)
				return
			}
		}
	}
}

// whenStopped says what the kernel does with a flow to a captured addr
// while shunt is not running.
func (p *Plan) whenStopped(addr netip.Addr) string {
	if !p.Config.KillSwitch {
		return "while shunt is not running, the destination takes the host's normal route (kill_switch is off)"
	}
	for _, h := range p.serverHosts() {
		if a, err := netip.ParseAddr(h); err == nil && a.Unmap() == addr {
			return "while shunt is not running, the destination takes the host's normal route: it is the SSH server or proxy " + h + ", which the kill switch leaves reachable"
		}
	}
	return "while shunt is not running (stopped or crashed), the destination is unreachable: the kill switch keeps it so until shunt starts again or shunt cleanup removes it"
}
