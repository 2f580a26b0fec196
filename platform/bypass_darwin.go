package platform

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/net/route"
	"golang.org/x/sys/unix"
)

// newOSBypass binds shunt's sockets to the primary interface
// (bypass_boundif.go), found in the routing table now and again after
// each routing message that may change it, until close.
func newOSBypass(o BypassOptions) (osBypass, error) {
	b := &boundIfBypass{log: o.Log, bind: bindToInterface}
	refresh := func() {
		p4, p6, err := fetchPrimary()
		if err != nil {
			// Keep what was chosen last: a passing failure to read the
			// table is no reason to stop every connection.
			o.Log.WithError(err).Warn("bypass: reading the routing table failed; the primary network interface stays as it was")
			return
		}
		b.setPrimary(p4, p6)
	}
	refresh()
	stop, err := followRoutingSocket(refresh, o.Log, "the bypass's primary network interface is")
	if err != nil {
		return nil, err
	}
	b.stop = sync.OnceValue(stop)
	return b, nil
}

// followRoutingSocket calls changed after each routing message that may
// change the primary interface or an address (followRoutes) until the
// stop it returns is called; stop waits for the last call.
func followRoutingSocket(changed func(), log logrus.FieldLogger, what string) (stop func() error, err error) {
	f, err := openRoutingSocket()
	if err != nil {
		return nil, err
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		followRoutes(f.Read, changed, log, what)
	}()
	return func() error {
		err := f.Close()
		<-finished
		return err
	}, nil
}

// openRoutingSocket opens a routing socket (PF_ROUTE), which gets a
// message for each change of routes, addresses and interfaces. It is
// non-blocking, so that the file's reads wait in Go's poller and Close
// wakes them.
func openRoutingSocket() (*os.File, error) {
	fd, err := unix.Socket(unix.AF_ROUTE, unix.SOCK_RAW, unix.AF_UNSPEC)
	if err != nil {
		return nil, fmt.Errorf("open a routing socket, to follow the routes: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("routing socket: %w", err)
	}
	return os.NewFile(uintptr(fd), "routing socket"), nil
}

// bindToInterface sets IP_BOUND_IF or IPV6_BOUND_IF: the socket's packets
// leave by interface index, whatever the routes say.
func bindToInterface(fd uintptr, v6 bool, index int) error {
	if v6 {
		return unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_BOUND_IF, index)
	}
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BOUND_IF, index)
}

// fetchPrimary reads the routing table (sysctl NET_RT_DUMP) and chooses
// the primary interface of each family (choosePrimary).
func fetchPrimary() (p4, p6 primaryIf, err error) {
	rib, err := route.FetchRIB(unix.AF_UNSPEC, route.RIBTypeRoute, 0)
	if err != nil {
		return p4, p6, fmt.Errorf("read the routing table: %w", err)
	}
	msgs, err := route.ParseRIB(route.RIBTypeRoute, rib)
	if err != nil {
		return p4, p6, fmt.Errorf("parse the routing table: %w", err)
	}
	var routes []ribRoute
	for _, m := range msgs {
		rm, ok := m.(*route.RouteMessage)
		if !ok || len(rm.Addrs) <= unix.RTAX_DST {
			continue
		}
		var dst netip.Addr
		switch a := rm.Addrs[unix.RTAX_DST].(type) {
		case *route.Inet4Addr:
			dst = netip.AddrFrom4(a.IP)
		case *route.Inet6Addr:
			dst = netip.AddrFrom16(a.IP)
		default:
			continue
		}
		var mask []byte
		if len(rm.Addrs) > unix.RTAX_NETMASK {
			switch a := rm.Addrs[unix.RTAX_NETMASK].(type) {
			case *route.Inet4Addr:
				mask = a.IP[:]
			case *route.Inet6Addr:
				mask = a.IP[:]
			}
		}
		routes = append(routes, ribRoute{Dst: ribPrefix(dst, mask, rm.Flags&unix.RTF_HOST != 0), Flags: rm.Flags, Index: rm.Index})
	}
	named := func(index int) primaryIf {
		p := primaryIf{Index: index}
		if index != 0 {
			if ifc, err := net.InterfaceByIndex(index); err == nil {
				p.Name = ifc.Name
			}
		}
		return p
	}
	return named(choosePrimary(routes, false)), named(choosePrimary(routes, true)), nil
}
