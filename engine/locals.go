package engine

import (
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
)

// localAddrs is the router's Locals with the OS's capture: this host's
// addresses, from its interfaces, read at start and again whenever the
// network watch sees an address or route change. A flow from any other
// address was routed here by another host (IP forwarding), and only rules
// with sources: match it. The flow path reads a snapshot, never the
// interfaces.
type localAddrs struct {
	// read lists the interfaces' addresses: net.InterfaceAddrs, or a
	// test's.
	read func() ([]net.Addr, error)
	log  logrus.FieldLogger
	set  atomic.Pointer[map[netip.Addr]struct{}]
}

var _ router.Locals = (*localAddrs)(nil)

func newLocalAddrs(log logrus.FieldLogger) *localAddrs {
	return &localAddrs{read: net.InterfaceAddrs, log: log}
}

// IsLocal implements router.Locals. Until the first refresh, and if it
// failed, only loopback and the TUN's own addresses are local: a flow
// from elsewhere is refused unless a rule's sources: cover it.
func (l *localAddrs) IsLocal(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if a.IsLoopback() {
		return true
	}
	if s := l.set.Load(); s != nil {
		_, ok := (*s)[a]
		return ok
	}
	return isTUNAddr(a)
}

// refresh reads the interfaces' addresses again. A failure keeps the
// snapshot it had.
func (l *localAddrs) refresh() {
	addrs, err := l.read()
	if err != nil {
		l.log.WithError(err).Error("cannot list this host's addresses: flows from addresses that are not known to be this host's are taken as forwarded by other hosts, and refused unless a rule's sources: cover them")
		return
	}
	s := map[netip.Addr]struct{}{}
	for _, p := range platform.TUNAddrs() {
		s[p.Addr()] = struct{}{}
	}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			s[na.Unmap()] = struct{}{}
		}
	}
	l.set.Store(&s)
}

func isTUNAddr(a netip.Addr) bool {
	for _, p := range platform.TUNAddrs() {
		if p.Addr() == a {
			return true
		}
	}
	return false
}

// ThisHost is this host's addresses as the data path tells them from other
// hosts' (router.Locals), read once, now: for shunt explain --from.
func ThisHost(log logrus.FieldLogger) router.Locals {
	l := newLocalAddrs(log)
	l.refresh()
	return l
}
