package platform

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Where the system tells only that something in the routing table
// changed (macOS's routing socket), the network watch compares what
// matters before and after: the primary interface of each family and the
// addresses of the interfaces but shunt's device. What is here builds
// everywhere and is tested on Linux; netwatch_darwin.go takes the
// snapshots.

// netSnapshot is the state of the network a connection depends on.
type netSnapshot struct {
	primary4, primary6 primaryIf
	// addrs are the interfaces' addresses ("en0 192.168.1.7/24"),
	// sorted, without shunt's device's.
	addrs []string
}

// ifAddr is one address of an interface, for newSnapshot.
type ifAddr struct {
	Interface string
	Prefix    netip.Prefix
}

// newSnapshot gathers a snapshot from the primary interfaces and the
// addresses, leaving out device's (shunt's own) and link-local IPv6 ones
// (which come and go with the link and carry no connection of shunt's).
func newSnapshot(p4, p6 primaryIf, addrs []ifAddr, device string) netSnapshot {
	s := netSnapshot{primary4: p4, primary6: p6}
	for _, a := range addrs {
		if a.Interface == device || a.Prefix.Addr().Is6() && a.Prefix.Addr().IsLinkLocalUnicast() {
			continue
		}
		s.addrs = append(s.addrs, a.Interface+" "+a.Prefix.String())
	}
	slices.Sort(s.addrs)
	s.addrs = slices.Compact(s.addrs)
	return s
}

// change says in a few words how next differs from s in a way that may
// have broken connections, "" if it does not.
func (s netSnapshot) change(next netSnapshot) string {
	var why []string
	if s.primary4.Index != next.primary4.Index {
		why = append(why, fmt.Sprintf("IPv4 default route %v → %v", s.primary4, next.primary4))
	}
	if s.primary6.Index != next.primary6.Index {
		why = append(why, fmt.Sprintf("IPv6 default route %v → %v", s.primary6, next.primary6))
	}
	if gone := missing(s.addrs, next.addrs); len(gone) > 0 {
		why = append(why, "address removed: "+strings.Join(gone, ", "))
	}
	if added := missing(next.addrs, s.addrs); len(added) > 0 {
		why = append(why, "address added: "+strings.Join(added, ", "))
	}
	return strings.Join(why, "; ")
}

// missing are the elements of a (sorted) that b (sorted) lacks.
func missing(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, x)
		}
	}
	return out
}

// watchSnapshots is the network watch of the systems that say only that
// something changed: subscribe calls its func after each message that may
// matter (from any goroutine) until the stop it returns is called;
// snapshot takes the state now. Once the messages pause for o.Debounce
// (or, in a flood of them, every 4 × o.Debounce), the watch takes a
// snapshot and tells o.OnChange how it differs from the last one, if it
// does.
func watchSnapshots(o NetWatchOptions, subscribe func(changed func()) (stop func() error, err error), snapshot func() (netSnapshot, bool)) (*NetWatcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.OnChange == nil {
		o.OnChange = func(string) {}
	}
	last, _ := snapshot()
	kick := make(chan struct{}, 1)
	stop, err := subscribe(func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-kick:
			}
			quiet := time.NewTimer(o.Debounce)
			flood := time.NewTimer(4 * o.Debounce)
			for waiting := true; waiting; {
				select {
				case <-done:
					quiet.Stop()
					flood.Stop()
					return
				case <-kick:
					quiet.Reset(o.Debounce)
				case <-quiet.C:
					waiting = false
				case <-flood.C:
					waiting = false
				}
			}
			quiet.Stop()
			flood.Stop()
			next, ok := snapshot()
			if !ok {
				continue
			}
			if why := last.change(next); why != "" {
				last = next
				o.OnChange(why)
			}
		}
	}()
	return &NetWatcher{close: sync.OnceFunc(func() {
		if err := stop(); err != nil {
			o.Log.WithError(err).Debug("watching the network: unsubscribing")
		}
		close(done)
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
