package platform

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
)

// Windows bypass, the part that decides: which interface a socket is bound
// to, and how. No build tag, so that its tests run on Linux; bypass_windows.go
// gives it the real IP Helper and setsockopt.
//
// A socket bound with IP_UNICAST_IF (IPV6_UNICAST_IF) to the primary
// interface, the one of the best default route, sends through that
// interface whatever longer routes point elsewhere: the capture's routes to
// the TUN never take it. The capture never installs a default route (it
// splits one into halves), so the primary interface is never the TUN.

// The socket options (ws2ipdef.h: IPPROTO_IP, IPPROTO_IPV6, IP_UNICAST_IF,
// IPV6_UNICAST_IF); x/sys/windows does not have the last two.
const (
	winIPProtoIP     = 0
	winIPProtoIPv6   = 41
	winIPUnicastIf   = 31
	winIPv6UnicastIf = 31
)

// winSetsockopt sets an int socket option, as windows.SetsockoptInt does.
type winSetsockopt func(fd uintptr, level, name, value int) error

// unicastIfOption is the option that binds a socket of a family to the
// interface of index: IP_UNICAST_IF takes the index in network byte order
// (as an IPv4 address is given), IPV6_UNICAST_IF in host byte order. value
// is what setsockopt's int holds, in host order.
func unicastIfOption(v6 bool, index uint32) (level, name, value int) {
	if v6 {
		return winIPProtoIPv6, winIPv6UnicastIf, int(int32(index))
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], index)
	return winIPProtoIP, winIPUnicastIf, int(int32(binary.NativeEndian.Uint32(b[:])))
}

// pickPrimary chooses the primary interface of a family among routes: the
// default route of the lowest metric (the route's plus its interface's,
// as Windows adds them) on an interface that is up; the lower interface
// index on a tie, so the choice is stable.
func pickPrimary(routes []winRoute, v6 bool) (winRoute, bool) {
	var best winRoute
	found := false
	for _, r := range routes {
		if !r.Dst.IsValid() || r.Dst.Bits() != 0 || r.Dst.Addr().Is6() != v6 || !r.Up || r.Index == 0 {
			continue
		}
		m, bm := uint64(r.Metric)+uint64(r.IfMetric), uint64(best.Metric)+uint64(best.IfMetric)
		if !found || m < bm || m == bm && r.Index < best.Index {
			best, found = r, true
		}
	}
	return best, found
}

// winBypass binds each socket to the primary interface of its family, and
// follows the default routes as they change.
type winBypass struct {
	ip         winIPHelper
	setsockopt winSetsockopt
	log        logrus.FieldLogger

	// refreshing makes refreshes one at a time: two notifications in a
	// row must not store the older table last.
	refreshing sync.Mutex
	mu         sync.Mutex
	// primary of IPv4 [0] and IPv6 [1]; Index 0: none.
	primary [2]winRoute
	stop    func() error
}

// newWinBypass reads the default routes and watches them.
func newWinBypass(ip winIPHelper, set winSetsockopt, log logrus.FieldLogger) (*winBypass, error) {
	b := &winBypass{ip: ip, setsockopt: set, log: log}
	if err := b.refresh(); err != nil {
		return nil, err
	}
	stop, err := ip.WatchRoutes(func() {
		if err := b.refresh(); err != nil {
			b.log.WithError(err).Warn("bypass: reading the default routes failed; the primary interface stays as it was")
		}
	})
	if err != nil {
		return nil, fmt.Errorf("bypass: following the default routes (NotifyRouteChange2): %w", err)
	}
	b.mu.Lock()
	b.stop = stop
	b.mu.Unlock()
	// A change between the first read and the watch is not lost.
	if err := b.refresh(); err != nil {
		b.log.WithError(err).Warn("bypass: reading the default routes failed; the primary interface stays as it was")
	}
	return b, nil
}

// refresh chooses the primary interfaces again, and logs a change.
func (b *winBypass) refresh() error {
	b.refreshing.Lock()
	defer b.refreshing.Unlock()
	routes, err := b.ip.DefaultRoutes()
	if err != nil {
		return fmt.Errorf("bypass: the default routes (GetIpForwardTable2): %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, v6 := range []bool{false, true} {
		r, _ := pickPrimary(routes, v6)
		old := b.primary[i]
		b.primary[i] = r
		if r.Index == old.Index && r.LUID == old.LUID {
			continue
		}
		log := b.log.WithField("family", familyName(v6))
		switch {
		case r.Index == 0:
			log.Warnf("bypass: no %s default route: shunt's own %s connections (SSH servers, direct flows) fail until there is one", familyName(v6), familyName(v6))
		case old.Index == 0:
			log.Infof("bypass: shunt's own %s connections leave through %s", familyName(v6), r)
		default:
			log.Infof("bypass: the primary interface changed: shunt's own %s connections leave through %s, no longer %s", familyName(v6), r, old)
		}
	}
	return nil
}

// control binds the socket to its family's primary interface; a socket
// to a loopback or link-local address stays as it is: no capture takes
// those, and they live on other interfaces (a link-local one is for the
// interface of its zone).
func (b *winBypass) control(network, address string, c syscall.RawConn) error {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		if a := ap.Addr().Unmap(); a.IsLoopback() || a.IsLinkLocalUnicast() {
			return nil
		}
	}
	v6 := socketIs6(network, address)
	b.mu.Lock()
	r := b.primary[0]
	if v6 {
		r = b.primary[1]
	}
	b.mu.Unlock()
	if r.Index == 0 {
		def := "0.0.0.0/0"
		if v6 {
			def = "::/0"
		}
		return fmt.Errorf("bypass: no primary network interface for %s (no default route %s on an interface that is up): connect to a network", familyName(v6), def)
	}
	level, name, value := unicastIfOption(v6, r.Index)
	var serr error
	if err := c.Control(func(fd uintptr) { serr = b.setsockopt(fd, level, name, value) }); err != nil {
		return err
	}
	if serr != nil {
		opt := "IP_UNICAST_IF"
		if v6 {
			opt = "IPV6_UNICAST_IF"
		}
		return fmt.Errorf("bypass: binding the socket to %s (setsockopt %s): %w", r, opt, serr)
	}
	return nil
}

// socketIs6 tells the socket's family: net.Dialer.Control is given
// "tcp4", "tcp6", "udp4" or "udp6"; from the address otherwise.
func socketIs6(network, address string) bool {
	switch {
	case strings.HasSuffix(network, "6"):
		return true
	case strings.HasSuffix(network, "4"):
		return false
	}
	ap, err := netip.ParseAddrPort(address)
	return err == nil && !ap.Addr().Unmap().Is4()
}

// close stops following the default routes.
func (b *winBypass) close() error {
	b.mu.Lock()
	stop := b.stop
	b.stop = nil
	b.mu.Unlock()
	if stop == nil {
		return nil
	}
	return stop()
}

var _ osBypass = (*winBypass)(nil)
