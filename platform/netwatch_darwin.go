package platform

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// WatchNetwork follows the routing socket and tells o.OnChange when the
// primary interface of a family or an interface's address changed
// (netwatch_snapshot.go), once the messages have paused for o.Debounce.
// shunt's device is left out; o.Table means nothing here.
func WatchNetwork(o NetWatchOptions) (*NetWatcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.OnChange == nil {
		o.OnChange = func(string) {}
	}
	f, err := openRoutingSocket()
	if err != nil {
		return nil, err
	}
	snapshot := func() (netSnapshot, bool) {
		p4, p6, err := fetchPrimary()
		if err != nil {
			o.Log.WithError(err).Debug("watching the network: reading the routing table")
			return netSnapshot{}, false
		}
		return newSnapshot(p4, p6, interfaceAddrs(), o.Device), true
	}
	last, _ := snapshot()
	done := make(chan struct{})
	refresh := func() {
		// Gather what comes together (a new lease brings an address
		// and a route): followRoutes makes one more call for the
		// messages that arrive meanwhile.
		select {
		case <-time.After(o.Debounce):
		case <-done:
			return
		}
		next, ok := snapshot()
		if !ok {
			return
		}
		if why := last.change(next); why != "" {
			last = next
			o.OnChange(why)
		}
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		followRoutes(f.Read, refresh, o.Log, "changes of the network are")
	}()
	return &NetWatcher{close: sync.OnceFunc(func() {
		close(done)
		f.Close()
		<-finished
	})}, nil
}

// interfaceAddrs are the addresses of the interfaces that are up.
func interfaceAddrs() []ifAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []ifAddr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					ones, _ := n.Mask.Size()
					out = append(out, ifAddr{Interface: ifc.Name, Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
				}
			}
		}
	}
	return out
}
