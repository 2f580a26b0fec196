package platform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/sirupsen/logrus"
)

// The bypass of macOS (bypass_darwin.go wires it): each socket is bound
// to the primary interface, the one of the default route, with
// IP_BOUND_IF (IPv4) or IPV6_BOUND_IF (IPv6). A bound socket leaves by
// that interface whatever the routes say, so the routes to the utun never
// take it, not even the halves of a captured default. The interface
// follows the default route: a goroutine reads the routing socket and
// chooses again on each change of routes, addresses or interfaces.
//
// What is here builds everywhere and is tested on Linux: the choice of
// the primary interface from the routes, the binding by address family,
// and the loop that follows the routing socket's messages.

// ErrNoPrimaryInterface is the error of a dial while no default route is
// known: binding to nothing would let the connection follow the routes,
// into the capture, and loop.
var ErrNoPrimaryInterface = errors.New("no primary network interface: not connected? (no default route through a gateway)")

// Route flags of darwin's routing table (net/route.h), the subset the
// choice reads; bypass_darwin_test.go checks them against x/sys/unix.
const (
	rtfUp        = 0x1
	rtfGateway   = 0x2
	rtfHost      = 0x4
	rtfReject    = 0x8
	rtfBlackhole = 0x1000
	rtfIfscope   = 0x1000000
)

// Types of darwin's routing messages (net/route.h) after which the primary
// interface may have changed.
const (
	rtmAdd     = 0x1
	rtmDelete  = 0x2
	rtmChange  = 0x3
	rtmNewAddr = 0xc
	rtmDelAddr = 0xd
	rtmIfInfo  = 0xe
)

// ribRoute is what the choice needs of a route of the routing table.
type ribRoute struct {
	Dst   netip.Prefix
	Flags int
	// Index is the route's interface.
	Index int
}

// choosePrimary returns the index of the primary interface for IPv4 (v6
// false) or IPv6, 0 if there is none: the interface of the first default
// route through a gateway that is up and not scoped to its interface.
// macOS keeps one such route per family, the primary service's; the
// defaults of the other services carry RTF_IFSCOPE. darwin's routes carry
// no priority, so among several the first in the table's order, the
// kernel's own choice, wins.
func choosePrimary(routes []ribRoute, v6 bool) int {
	for _, r := range routes {
		switch {
		case !r.Dst.IsValid() || r.Dst.Bits() != 0 || r.Dst.Addr().Is6() != v6 || r.Index <= 0:
		case r.Flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway:
		case r.Flags&(rtfHost|rtfReject|rtfBlackhole|rtfIfscope) != 0:
		default:
			return r.Index
		}
	}
	return 0
}

// ribPrefix is the destination of a routing table entry: dst with the
// netmask's leading ones (a mask of no bytes, as darwin writes a default
// route's, is /0), or a single address for a host route.
func ribPrefix(dst netip.Addr, mask []byte, host bool) netip.Prefix {
	if host {
		return netip.PrefixFrom(dst, dst.BitLen())
	}
	bits := 0
	for _, b := range mask {
		if b == 0xff {
			bits += 8
			continue
		}
		for b&0x80 != 0 {
			bits++
			b <<= 1
		}
		break
	}
	bits = min(bits, dst.BitLen())
	return netip.PrefixFrom(dst, bits).Masked()
}

// primaryIf is a primary interface; Index 0 is none.
type primaryIf struct {
	Index int
	Name  string
}

func (p primaryIf) String() string {
	if p.Index == 0 {
		return "none"
	}
	if p.Name == "" {
		return fmt.Sprintf("interface %d", p.Index)
	}
	return p.Name
}

// boundIfBypass binds sockets to the primary interface of their family.
type boundIfBypass struct {
	log logrus.FieldLogger
	// bind binds socket fd to interface index: IP_BOUND_IF, or
	// IPV6_BOUND_IF when v6.
	bind func(fd uintptr, v6 bool, index int) error
	// stop ends following the routes; nil: nothing to stop.
	stop func() error

	idx4, idx6 atomic.Int64

	mu       sync.Mutex
	cur4     primaryIf
	cur6     primaryIf
	reported bool
}

// setPrimary makes p4 and p6 the primary interfaces, and logs a change.
func (b *boundIfBypass) setPrimary(p4, p6 primaryIf) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idx4.Store(int64(p4.Index))
	b.idx6.Store(int64(p6.Index))
	switch {
	case !b.reported:
		b.log.WithFields(logrus.Fields{"ipv4": p4.String(), "ipv6": p6.String()}).Info("bypass: shunt's own connections leave by the primary network interface")
	case p4 != b.cur4 || p6 != b.cur6:
		for _, c := range []struct {
			fam      string
			old, new primaryIf
		}{{"IPv4", b.cur4, p4}, {"IPv6", b.cur6, p6}} {
			if c.old != c.new {
				b.log.Infof("bypass: the primary network interface for %s changed: %s → %s", c.fam, c.old, c.new)
			}
		}
	}
	b.reported, b.cur4, b.cur6 = true, p4, p6
}

// control binds the socket to the primary interface of its family
// (network is "tcp4", "udp6", ...: net.Dialer calls Control with the
// family chosen). Loopback destinations are left alone: no interface but
// lo0 reaches them, and no capture takes them.
func (b *boundIfBypass) control(network, address string, c syscall.RawConn) error {
	var v6 bool
	switch network {
	case "tcp4", "udp4":
	case "tcp6", "udp6":
		v6 = true
	default:
		return fmt.Errorf("bypass: cannot bind a socket of network %q to an interface (want tcp4, tcp6, udp4 or udp6)", network)
	}
	if ap, err := netip.ParseAddrPort(address); err == nil && ap.Addr().Unmap().IsLoopback() {
		return nil
	}
	idx, fam := b.idx4.Load(), "IPv4"
	if v6 {
		idx, fam = b.idx6.Load(), "IPv6"
	}
	if idx == 0 {
		return fmt.Errorf("connect to %s outside the capture: %w for %s", address, ErrNoPrimaryInterface, fam)
	}
	var serr error
	if err := c.Control(func(fd uintptr) { serr = b.bind(fd, v6, int(idx)) }); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("bind the socket to the primary interface (index %d) for %s: %w", idx, address, serr)
	}
	return nil
}

func (b *boundIfBypass) close() error {
	if b.stop == nil {
		return nil
	}
	return b.stop()
}

// routeMsgTypes returns the types of the routing messages in b, each
// starting with darwin's header: u_short rtm_msglen (little-endian, as on
// every Mac), u_char rtm_version, u_char rtm_type. A message cut short
// ends the list.
func routeMsgTypes(b []byte) []int {
	var types []int
	for len(b) >= 4 {
		n := int(binary.LittleEndian.Uint16(b))
		if n < 4 || n > len(b) {
			break
		}
		types = append(types, int(b[3]))
		b = b[n:]
	}
	return types
}

// changesPrimary: after a message of this type, the primary interface may
// be another.
func changesPrimary(typ int) bool {
	switch typ {
	case rtmAdd, rtmDelete, rtmChange, rtmNewAddr, rtmDelAddr, rtmIfInfo:
		return true
	}
	return false
}

// followRoutes reads routing messages with read until it fails for good
// (the socket closed), and calls refresh after those that may change the
// primary interface. refresh runs in a goroutine of its own, so the socket
// is read on while it runs (an unread socket overflows), and the changes
// that come meanwhile make one more call. A socket that overflowed
// (ENOBUFS) lost messages: that counts as a change. followRoutes returns
// once refresh has returned for the last time; a failure says what is no
// longer followed.
func followRoutes(read func([]byte) (int, error), refresh func(), log logrus.FieldLogger, what string) {
	kick := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range kick {
			refresh()
		}
	}()
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	buf := make([]byte, 4096)
	for {
		n, err := read(buf)
		if errors.Is(err, syscall.ENOBUFS) {
			poke()
			continue
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				log.WithError(err).Warn("reading the routing socket failed: " + what + " no longer followed")
			}
			break
		}
		if slices.ContainsFunc(routeMsgTypes(buf[:n]), changesPrimary) {
			poke()
		}
	}
	close(kick)
	<-done
}

var _ osBypass = (*boundIfBypass)(nil)
