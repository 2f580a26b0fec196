package platform

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// BypassOptions configure NewBypass.
type BypassOptions struct {
	// Mark is the firewall mark of the bypass's sockets on Linux
	// (SO_MARK, which needs CAP_NET_ADMIN): marked packets skip the
	// capture's policy rule. Other systems bind the sockets to the
	// primary interface instead and ignore it.
	Mark uint32
	// Servers returns the name servers the bypass's look-ups ask, in
	// place of the system's, whenever it returns any: once shunt's own
	// DNS server is the system's, shunt's look-ups (SSH servers' names,
	// direct flows to names) must go to the resolvers the system had, or
	// they would come back to shunt. Each attempt of a look-up asks the
	// next server. Nil: the system's.
	Servers func() []netip.AddrPort
	// Plain makes a bypass that leaves sockets alone, for a shunt that
	// captures nothing (no TUN): there is nothing to bypass, and marking
	// needs root.
	Plain bool
	// Log receives the changes of the primary interface (macOS,
	// Windows). Nil: nothing is logged.
	Log logrus.FieldLogger
}

// Bypass opens connections whose packets never enter the capture, even
// where a captured range covers their destination: the SSH connections,
// the proxies' and the direct flows. Each system has its way (osBypass):
//
//   - Linux: SO_MARK, which the capture's policy rule skips;
//   - macOS: IP_BOUND_IF / IPV6_BOUND_IF on the primary interface, the
//     one of the default route, which the capture never takes (it splits a
//     captured default into halves);
//   - Windows: IP_UNICAST_IF / IPV6_UNICAST_IF on the primary interface.
//
// On macOS and Windows the primary interface follows the default route as
// it changes (another Wi-Fi, a cable plugged in). Bypass is safe for
// concurrent use.
type Bypass struct {
	dialer net.Dialer
	os     osBypass
}

// osBypass is a system's way of keeping a socket out of the capture.
type osBypass interface {
	// control prepares a socket before it connects (net.Dialer.Control).
	control(network, address string, c syscall.RawConn) error
	// close stops following the default route.
	close() error
}

// NewBypass returns the bypass of this system. Close releases what it
// watches the routes with.
func NewBypass(o BypassOptions) (*Bypass, error) {
	if o.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		o.Log = l
	}
	if o.Plain {
		return newBypass(plainBypass{}, o.Servers), nil
	}
	ob, err := newOSBypass(o)
	if err != nil {
		return nil, err
	}
	return newBypass(ob, o.Servers), nil
}

func newBypass(ob osBypass, servers func() []netip.AddrPort) *Bypass {
	b := &Bypass{os: ob}
	ctrl := ob.control
	b.dialer = net.Dialer{Control: ctrl, Timeout: 30 * time.Second}
	var next atomic.Uint32
	b.dialer.Resolver = &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if servers != nil {
				if s := servers(); len(s) > 0 {
					address = s[int(next.Add(1)-1)%len(s)].String()
				}
			}
			return (&net.Dialer{Control: ctrl}).DialContext(ctx, network, address)
		},
	}
	return b
}

// DialContext connects to addr ("host:port"; a host name is looked up
// through Resolver) outside the capture.
func (b *Bypass) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return b.dialer.DialContext(ctx, network, addr)
}

// Resolver looks names up outside the capture, asking the servers of
// BypassOptions.Servers.
func (b *Bypass) Resolver() *net.Resolver { return b.dialer.Resolver }

// NetDialer is a dialer of the bypass for libraries that take a
// *net.Dialer (miekg/dns's client). Callers must not change it.
func (b *Bypass) NetDialer() *net.Dialer { return &b.dialer }

// Close stops following the default route. Connections made stay as
// they are.
func (b *Bypass) Close() error { return b.os.close() }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// plainBypass leaves sockets as they are.
type plainBypass struct{}

func (plainBypass) control(string, string, syscall.RawConn) error { return nil }
func (plainBypass) close() error                                  { return nil }
