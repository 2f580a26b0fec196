package engine

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// exemptLookupTimeout bounds the look-up of the SSH servers' names for the
// kill switch's exemptions.
const exemptLookupTimeout = 3 * time.Second

// serverHosts are the hosts shunt itself connects to first: the profiles'
// SSH servers and the proxies. The kill switch leaves them reachable.
func (p *Plan) serverHosts() []string {
	var out []string
	add := func(h string) {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for _, prof := range p.Profiles {
		for _, h := range prof.Hosts {
			add(h)
		}
		if prof.Proxy != nil {
			add(prof.Proxy.Hostname())
		}
	}
	for _, r := range p.ProxyRules {
		if r.Proxy != nil {
			add(r.Proxy.Hostname())
		}
	}
	return out
}

// exemptions are the addresses the kill switch leaves reachable: the
// answers for the plan's SSH servers and proxies, asked once per plan (at
// start, and again at each reload, which makes a new plan), and every
// address the broker has since connected to for one of them (after a
// reload, the last one for each host the plan still has). The names'
// answers may change while shunt runs (a server moved, round-robin,
// failover): the broker's own look-up finds the new address when it
// connects, and from then on it is exempt too. That follows exactly the
// addresses shunt uses, without polling DNS on a timer while the answers
// stay the same; routes change with the rules' DNS answers far more often,
// and reuse the plan's answer.
type exemptions struct {
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	log    logrus.FieldLogger

	mu    sync.Mutex
	plan  *Plan
	hosts []string
	addrs []netip.Addr
	seen  map[string]netip.Addr // the address last connected to, by host
}

// get returns the addresses exempt under plan p.
func (x *exemptions) get(p *Plan) []netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.forPlan(p)
	return slices.Clone(x.addrs)
}

// forPlan resolves p's hosts unless p is the plan resolved last; the
// address last connected to for each host p still has stays exempt.
func (x *exemptions) forPlan(p *Plan) {
	if x.plan == p {
		return
	}
	hosts := p.serverHosts()
	ctx, cancel := context.WithTimeout(context.Background(), exemptLookupTimeout)
	defer cancel()
	addrs := []netip.Addr{}
	add := func(a netip.Addr) {
		if a = a.Unmap(); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			add(a)
			continue
		}
		if x.lookup == nil {
			continue
		}
		as, err := x.lookup(ctx, h)
		if err != nil {
			x.log.WithError(err).WithField("host", h).Warn("kill switch: the SSH server's name does not resolve now, so its address is not exempt until shunt connects to it: with shunt stopped, it is unreachable if a captured destination covers it")
			continue
		}
		for _, a := range as {
			add(a)
		}
	}
	for h, a := range x.seen {
		if !slices.Contains(hosts, h) {
			delete(x.seen, h)
			continue
		}
		add(a)
	}
	x.plan, x.hosts, x.addrs = p, hosts, addrs
}

// connected records that the broker connected to a for host, under plan
// p, and reports whether a was not exempt yet.
func (x *exemptions) connected(p *Plan, host string, a netip.Addr) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.forPlan(p)
	a = a.Unmap()
	if x.seen == nil {
		x.seen = map[string]netip.Addr{}
	}
	x.seen[host] = a
	if slices.Contains(x.addrs, a) {
		return false
	}
	x.addrs = append(x.addrs, a)
	return true
}

// serverDialer is the broker's dialer: it tells connected the host and
// address of each connection it makes, all to SSH servers and proxies.
type serverDialer struct {
	Dialer
	connected func(host string, a netip.Addr)
}

func (d serverDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil {
		return c, err
	}
	host, _, herr := net.SplitHostPort(addr)
	if ap, perr := netip.ParseAddrPort(c.RemoteAddr().String()); herr == nil && perr == nil {
		d.connected(host, ap.Addr())
	}
	return c, nil
}
