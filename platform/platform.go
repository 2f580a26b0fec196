// Package platform changes the host's networking for shunt: it points the
// captured destinations at the TUN device, keeps shunt's own connections
// out of the capture, and undoes both on exit (and after a crash, at the
// next start). Each operating system has its own file.
package platform

import (
	"errors"
	"net"
	"net/netip"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// Config is what shunt asks of the host's routing.
type Config struct {
	// Device is the capture device's real name, as tun.Open reports it
	// (macOS picks utunN itself); it must exist already by OpenCapture.
	Device string
	// Routes are the destinations to capture.
	Routes []netip.Prefix
	// MTU is the device's (tun.mtu), for systems whose device does not
	// carry it to the interface by itself (Windows); 0 leaves it.
	MTU int
	// KillSwitch keeps Routes unreachable while shunt is not running: from
	// OpenCapture on, each captured destination has a route that refuses
	// it behind its route to the device, which takes over when the device
	// goes (a crash), and Close leaves those in place. The next
	// OpenCapture replaces them; CleanUp removes them. Linux only so far.
	KillSwitch bool
	// Exempt are addresses the kill switch leaves on the host's normal
	// routes (the SSH servers and proxies), even when a captured
	// destination covers them. While shunt runs they are captured as
	// before.
	Exempt []netip.Addr
	// Linux holds what only Linux's capture uses.
	Linux LinuxConfig
}

// LinuxConfig is the part of Config only Linux's policy routing uses.
type LinuxConfig struct {
	// Mark is the firewall mark of shunt's own sockets (SSH connections,
	// direct flows): marked packets never enter the capture.
	Mark uint32
	// Table is the routing table that holds the capture routes.
	Table int
	// Priority is the priority of the policy rules that select Table.
	Priority int
}

// Capture is the host's routing pointed at the capture device, as
// OpenCapture installed it.
type Capture interface {
	// SetRoutes makes the captured destinations exactly routes. Only the
	// difference changes: a destination captured before and after is
	// never unrouted, not even for a moment.
	SetRoutes(routes []netip.Prefix) error
	// SetKillSwitch turns the kill switch on or off, leaving exempt on
	// the host's normal routes (Config.KillSwitch).
	SetKillSwitch(on bool, exempt []netip.Addr) error
	// Close removes what the capture installed (but a kill switch's
	// routes, which outlive it by design).
	Close() error
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

// DefaultConfig returns the config for device capturing routes.
func DefaultConfig(device string, routes []netip.Prefix) Config {
	return Config{Device: device, Routes: routes, Linux: LinuxConfig{Mark: DefaultMark, Table: DefaultTable, Priority: DefaultPriority}}
}

// TUNAddrs are the addresses given to the TUN device. The kernel uses them
// as the source of captured connections; nothing else ever sees them.
// internal/netlayout chooses them, beside the DNS server's address and the
// fake-IP ranges.
func TUNAddrs() []netip.Prefix { return netlayout.TUNAddrs() }

// ErrNotSupported is returned where capture is not implemented yet.
var ErrNotSupported = errors.New("transparent capture is not supported on this operating system yet (Linux, macOS and Windows only)")

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
