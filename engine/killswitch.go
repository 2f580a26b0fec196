package engine

import (
	"context"
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

// exemptions resolves the hosts the kill switch leaves reachable, and
// keeps the answer while the hosts stay the same (routes change with DNS
// answers far more often than the profiles do).
type exemptions struct {
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	log    logrus.FieldLogger

	mu    sync.Mutex
	hosts []string
	addrs []netip.Addr
}

func (x *exemptions) get(hosts []string) []netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.addrs != nil && slices.Equal(hosts, x.hosts) {
		return x.addrs
	}
	ctx, cancel := context.WithTimeout(context.Background(), exemptLookupTimeout)
	defer cancel()
	addrs := []netip.Addr{}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil {
			addrs = append(addrs, a.Unmap())
			continue
		}
		if x.lookup == nil {
			continue
		}
		as, err := x.lookup(ctx, h)
		if err != nil {
			x.log.WithError(err).WithField("host", h).Warn("kill switch: the SSH server's name does not resolve now, so its address is not exempt: with shunt stopped, it is unreachable if a captured destination covers it")
			continue
		}
		for _, a := range as {
			addrs = append(addrs, a.Unmap())
		}
	}
	x.hosts, x.addrs = slices.Clone(hosts), addrs
	return addrs
}
