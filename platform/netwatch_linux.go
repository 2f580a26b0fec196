package platform

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchNetwork watches the routes and addresses (netlink) and tells
// o.OnChange of the changes that may break shunt's connections, gathered
// (o.Debounce). shunt's own table and TUN device are left out.
func WatchNetwork(o NetWatchOptions) (*NetWatcher, error) {
	if o.Table == 0 {
		o.Table = DefaultTable
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.OnChange == nil {
		o.OnChange = func(string) {}
	}
	done := make(chan struct{})
	onErr := func(err error) { o.Log.WithError(err).Debug("watching the network (netlink)") }
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		return nil, fmt.Errorf("watching the routes (netlink): %w", err)
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		close(done)
		for range routes {
		}
		return nil, fmt.Errorf("watching the addresses (netlink): %w", err)
	}
	tunIndex := 0
	if ifc, err := net.InterfaceByName(o.Device); err == nil {
		tunIndex = ifc.Index
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		watchLoop(o, tunIndex, routes, addrs, done)
	}()
	return &NetWatcher{close: sync.OnceFunc(func() {
		close(done)
		<-finished
	})}, nil
}

// watchLoop reads the changes until both channels close (after done),
// and calls o.OnChange once the relevant ones have stopped coming for
// o.Debounce (or, in a flood of them, every 4 × o.Debounce).
func watchLoop(o NetWatchOptions, tunIndex int, routes <-chan netlink.RouteUpdate, addrs <-chan netlink.AddrUpdate, done <-chan struct{}) {
	var (
		reasons []string
		first   time.Time
		timer   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	note := func(why string, ok bool) {
		if !ok {
			return
		}
		if len(reasons) == 0 {
			first = time.Now()
		}
		if len(reasons) < 4 && !containsString(reasons, why) {
			reasons = append(reasons, why)
		}
		wait := o.Debounce
		if left := 4*o.Debounce - time.Since(first); left < wait {
			wait = max(left, 0)
		}
		timer.Reset(wait)
	}
	for routes != nil || addrs != nil {
		select {
		case u, ok := <-routes:
			if !ok {
				routes = nil
				continue
			}
			note(routeChange(u, o.Table, tunIndex))
		case u, ok := <-addrs:
			if !ok {
				addrs = nil
				continue
			}
			note(addrChange(u, tunIndex))
		case <-timer.C:
			why := strings.Join(reasons, "; ")
			reasons = nil
			select {
			case <-done:
			default:
				o.Log.WithField("change", why).Info("the network changed")
				o.OnChange(why)
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// routeChange tells whether u may change the path of shunt's connections,
// and says how: a default route added or removed, in any table but
// shunt's own and the kernel's local one, not through the TUN device.
func routeChange(u netlink.RouteUpdate, table, tunIndex int) (string, bool) {
	r := u.Route
	if r.Table == table || r.Table == unix.RT_TABLE_LOCAL || (tunIndex != 0 && r.LinkIndex == tunIndex) {
		return "", false
	}
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones != 0 {
			return "", false
		}
	}
	var what string
	switch u.Type {
	case unix.RTM_NEWROUTE:
		what = "default route added"
	case unix.RTM_DELROUTE:
		what = "default route removed"
	default:
		return "", false
	}
	if r.Gw != nil {
		what += " (via " + r.Gw.String() + ")"
	}
	return what, true
}

// addrChange tells whether u may take an SSH connection's local address
// away, or bring a better one: an address added to or removed from any
// interface but the TUN device, loopback addresses left out.
func addrChange(u netlink.AddrUpdate, tunIndex int) (string, bool) {
	if (tunIndex != 0 && u.LinkIndex == tunIndex) || u.LinkAddress.IP == nil || u.LinkAddress.IP.IsLoopback() {
		return "", false
	}
	what := "address removed: "
	if u.NewAddr {
		what = "address added: "
	}
	what += u.LinkAddress.String()
	if ifc, err := net.InterfaceByIndex(u.LinkIndex); err == nil {
		what += " on " + ifc.Name
	}
	return what, true
}
