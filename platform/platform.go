// Package platform changes the host's networking for shunt: it points the
// captured destinations at the TUN device, keeps shunt's own connections
// out of the capture, and undoes both on exit (and after a crash, at the
// next start). Each operating system has its own file.
package platform

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// Config is what shunt asks of the host.
type Config struct {
	// TUN is the name of the capture device; it must exist already.
	TUN string
	// Routes are the destinations to capture.
	Routes []netip.Prefix
	// Mark is the firewall mark of shunt's own sockets (SSH connections,
	// direct flows): marked packets never enter the capture.
	Mark uint32
	// Table is the routing table that holds the capture routes.
	Table int
	// Priority is the priority of the policy rules that select Table.
	Priority int
	// KillSwitch keeps Routes unreachable while shunt is not running: from
	// Setup on, each captured destination has an "unreachable" route
	// behind its route to the TUN (KillSwitchMetric), which takes over
	// when the TUN goes (a crash), and Close leaves those and the policy
	// rules in place. The next Setup replaces them; CleanUp removes them.
	KillSwitch bool
	// Exempt are addresses the kill switch leaves on the host's normal
	// routes (the SSH servers and proxies), even when a captured
	// destination covers them. While shunt runs they are captured as
	// before.
	Exempt []netip.Addr
}

// KillSwitchMetric is the metric of the kill switch's routes: above any
// route to the TUN (metric 0 for IPv4, 1024 for IPv6), so they count only
// once the TUN's routes are gone.
const KillSwitchMetric = 0x5368_0000

// Defaults keep shunt's routing state recognisable: "Sh" in hex.
const (
	DefaultMark     = 0x5368
	DefaultTable    = 0x5368
	DefaultPriority = 5368
)

// DefaultConfig returns the config for device tun capturing routes.
func DefaultConfig(tun string, routes []netip.Prefix) Config {
	return Config{TUN: tun, Routes: routes, Mark: DefaultMark, Table: DefaultTable, Priority: DefaultPriority}
}

// TUNAddrs are the addresses given to the TUN device. The kernel uses them
// as the source of captured connections; nothing else ever sees them.
// internal/netlayout chooses them, beside the DNS server's address and the
// fake-IP ranges.
func TUNAddrs() []netip.Prefix { return netlayout.TUNAddrs() }

// ErrNotSupported is returned where capture is not implemented yet.
var ErrNotSupported = errors.New("transparent capture is not supported on this operating system yet (Linux only for now)")

// BypassDialer returns a dialer whose connections, and DNS look-ups, leave
// through the host's normal routes even where a captured range covers
// their destination.
func BypassDialer(mark uint32) *net.Dialer { return BypassDialerVia(mark, nil) }

// BypassDialerVia is BypassDialer whose DNS look-ups ask the name servers
// servers returns, in place of those of /etc/resolv.conf, whenever it
// returns any: once shunt's own DNS server is the system's, shunt's look-ups
// (SSH servers' names, direct flows to names) must go to the resolvers the
// system had, or they would come back to shunt. Each attempt of a look-up
// asks the next server.
func BypassDialerVia(mark uint32, servers func() []netip.AddrPort) *net.Dialer {
	ctrl := markControl(mark)
	d := &net.Dialer{Control: ctrl, Timeout: 30 * time.Second}
	var next atomic.Uint32
	d.Resolver = &net.Resolver{
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
	return d
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
