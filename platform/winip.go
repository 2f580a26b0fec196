package platform

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"

	shunterrs "github.com/shunt-dev/shunt/internal/errs"
)

// Windows capture, the part that decides: which IP Helper calls for which
// configuration. It has no build tag, so that its tests run on Linux with
// a fake winIPHelper; winip_windows.go is the real one (winipcfg, from
// golang.zx2c4.com/wireguard/windows).
//
// Windows has one routing table, and picks a route by the longest prefix,
// then by the lowest metric: the route's plus its interface's. The capture
// gives the TUN its addresses (TUNAddrs), an interface metric of 0, and a
// route on the TUN (on-link, metric 0) per captured destination. A
// captured default route (0.0.0.0/0, ::/0) becomes its two halves (/1),
// which win by their longer prefix while the real default route stays in
// place: the bypass's sockets follow it (IP_UNICAST_IF on its interface).
//
// The routes live in the active store only, and go with their interface:
// when shunt ends, even by a crash, the wintun adapter goes and takes them
// along. Nothing is left to clean up. No kill switch yet: it would need
// the Windows Filtering Platform, as routes alone cannot outlive the
// adapter.

// winIPHelper is the part of Windows' IP Helper API (iphlpapi.dll) the
// capture and the bypass use. Interfaces are named by their LUID.
type winIPHelper interface {
	// LUIDByAlias finds the interface whose alias (friendly name) is
	// alias: wintun's adapters are named so. None: errNoAdapter.
	LUIDByAlias(alias string) (uint64, error)
	// SetAddresses makes addrs the unicast addresses of one family
	// (addrs' own; all are of one family) on the interface: those not in
	// addrs go (CreateUnicastIpAddressEntry, DeleteUnicastIpAddressEntry).
	SetAddresses(luid uint64, v6 bool, addrs []netip.Prefix) error
	// SetInterface gives the interface a fixed metric for one family, in
	// place of the automatic one, and its MTU (NlMtu) unless mtu is 0
	// (SetIpInterfaceEntry).
	SetInterface(luid uint64, v6 bool, metric, mtu uint32) error
	// AddRoute adds an on-link route to dst through the interface
	// (CreateIpForwardEntry2); a route there already is no error.
	AddRoute(luid uint64, dst netip.Prefix, metric uint32) error
	// DeleteRoute removes the on-link route to dst through the interface
	// (DeleteIpForwardEntry2); a route not there is no error.
	DeleteRoute(luid uint64, dst netip.Prefix) error
	// DefaultRoutes are the host's default routes, of both families
	// (GetIpForwardTable2), with their interfaces' metrics and states.
	DefaultRoutes() ([]winRoute, error)
	// WatchRoutes calls changed whenever a route or an interface changes
	// (NotifyRouteChange2, NotifyIpInterfaceChange), from any goroutine,
	// until the returned stop is called; stop waits for the calls
	// running.
	WatchRoutes(changed func()) (stop func() error, err error)
}

// winRoute is one default route, as the bypass chooses among them.
type winRoute struct {
	LUID  uint64
	Index uint32 // the interface's index, what IP_UNICAST_IF takes
	Dst   netip.Prefix
	// Metric is the route's metric, IfMetric its interface's: Windows
	// adds them up.
	Metric, IfMetric uint32
	// Up: the interface is operational (IfOperStatusUp).
	Up bool
	// Alias is the interface's name, for the log.
	Alias string
}

func (r winRoute) String() string {
	name := r.Alias
	if name == "" {
		name = "interface"
	}
	return fmt.Sprintf("%s (index %d, metric %d+%d)", name, r.Index, r.Metric, r.IfMetric)
}

// Metrics of the capture: its interface and routes come before any other
// (0 is the lowest there is). Prefix length decides first, so they matter
// only against a route to the same destination.
const (
	winTUNMetric   = 0
	winRouteMetric = 0
)

// errNoAdapter: no network adapter has the name asked for.
var errNoAdapter = errors.New("no network adapter has that name")

// ErrKillSwitchWindows: the kill switch needs what Windows routes cannot
// do alone.
var ErrKillSwitchWindows = errors.New("kill_switch is not supported on Windows yet (it needs Windows Filtering Platform rules, which shunt does not install): set kill_switch: false")

// winPrepare checks, before the TUN is created, that its name is free:
// an adapter of that name belongs to a shunt that runs (wintun removes a
// crashed process's adapters with it).
func winPrepare(ip winIPHelper, cfg Config) error {
	if cfg.KillSwitch {
		return ErrKillSwitchWindows
	}
	if cfg.Device == "" {
		return nil
	}
	_, err := ip.LUIDByAlias(cfg.Device)
	switch {
	case err == nil:
		return fmt.Errorf("network adapter %q exists already: is another shunt running? Stop it first, or set tun.name to another name", cfg.Device)
	case errors.Is(err, errNoAdapter):
		return nil
	}
	return fmt.Errorf("looking for a network adapter named %q (GetAdaptersAddresses): %w", cfg.Device, err)
}

// winCapture is Windows' capture: the TUN's addresses and the routes on it.
type winCapture struct {
	ip    winIPHelper
	luid  uint64
	dev   string
	log   logrus.FieldLogger
	have6 bool

	mu sync.Mutex
	// routes are the destinations routed to the TUN, after the split of
	// the default routes.
	routes map[netip.Prefix]bool
	closed bool
}

// openWinCapture finds the TUN by its name, gives it its addresses,
// metric and MTU (0: as the adapter has it), and routes cfg.Routes to it.
// Without IPv6 on the adapter it captures IPv4 only. On error it undoes
// what it did.
func openWinCapture(ip winIPHelper, cfg Config, mtu uint32, log logrus.FieldLogger) (_ *winCapture, err error) {
	if cfg.KillSwitch {
		return nil, ErrKillSwitchWindows
	}
	luid, err := ip.LUIDByAlias(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("find the TUN adapter %q (GetAdaptersAddresses): %w", cfg.Device, err)
	}
	c := &winCapture{ip: ip, luid: luid, dev: cfg.Device, log: log, routes: map[netip.Prefix]bool{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var addrs [2][]netip.Prefix
	for _, p := range TUNAddrs() {
		i := 0
		if p.Addr().Is6() {
			i = 1
		}
		addrs[i] = append(addrs[i], p)
	}
	for i, v6 := range []bool{false, true} {
		if len(addrs[i]) == 0 {
			continue
		}
		what, err := "", ip.SetAddresses(luid, v6, addrs[i])
		if err != nil {
			what = fmt.Sprintf("addresses %s on %s (CreateUnicastIpAddressEntry)", prefixList(addrs[i]), cfg.Device)
		} else if err = ip.SetInterface(luid, v6, winTUNMetric, mtu); err != nil {
			what = fmt.Sprintf("%s metric and MTU of %s (SetIpInterfaceEntry)", familyName(v6), cfg.Device)
		}
		if err != nil {
			if v6 {
				log.WithError(err).Warnf("IPv6 is unavailable on the TUN adapter: %s failed; IPv6 destinations are not captured", what)
				continue
			}
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		c.have6 = c.have6 || v6
	}
	if err := c.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return c, nil
}

// winRoutesFor are the routes that capture routes: masked, without
// duplicates, a default route split into its halves, and IPv6 only where
// the TUN has it; sorted, IPv4 first.
func winRoutesFor(routes []netip.Prefix, have6 bool) []netip.Prefix {
	seen := map[netip.Prefix]bool{}
	var out []netip.Prefix
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range routes {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is6() && !have6 {
			continue
		}
		if p.Bits() == 0 {
			lo, hi := defaultHalves(p.Addr().Is6())
			add(lo)
			add(hi)
			continue
		}
		add(p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

// defaultHalves are the two /1 routes that together cover a family's
// default route.
func defaultHalves(v6 bool) (lo, hi netip.Prefix) {
	if v6 {
		return netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")
	}
	return netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// SetRoutes makes the routes to the TUN exactly what routes capture: it
// adds the new ones first, then removes those gone, so that a destination
// captured before and after is never unrouted.
func (c *winCapture) SetRoutes(routes []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("capture is closed")
	}
	want := winRoutesFor(routes, c.have6)
	for _, p := range want {
		if c.routes[p] {
			continue
		}
		if err := c.ip.AddRoute(c.luid, p, winRouteMetric); err != nil {
			return fmt.Errorf("route %v to %s (CreateIpForwardEntry2): %w", p, c.dev, err)
		}
		c.routes[p] = true
	}
	var gone []netip.Prefix
	for p := range c.routes {
		if !slices.Contains(want, p) {
			gone = append(gone, p)
		}
	}
	slices.SortFunc(gone, comparePrefix)
	for _, p := range gone {
		if err := c.ip.DeleteRoute(c.luid, p); err != nil {
			return fmt.Errorf("remove route %v from %s (DeleteIpForwardEntry2): %w", p, c.dev, err)
		}
		delete(c.routes, p)
	}
	return nil
}

// SetKillSwitch refuses to turn the kill switch on: Windows has none yet.
func (c *winCapture) SetKillSwitch(on bool, _ []netip.Addr) error {
	if on {
		return ErrKillSwitchWindows
	}
	return nil
}

// Close removes the routes to the TUN. Its addresses go with the adapter.
func (c *winCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var routes []netip.Prefix
	for p := range c.routes {
		routes = append(routes, p)
	}
	slices.SortFunc(routes, comparePrefix)
	var errs []error
	for _, p := range routes {
		if err := c.ip.DeleteRoute(c.luid, p); err != nil {
			errs = append(errs, fmt.Errorf("remove route %v from %s (DeleteIpForwardEntry2): %w", p, c.dev, err))
		}
	}
	c.routes = nil
	return shunterrs.Join(errs...)
}

func familyName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func prefixList(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}

var _ Capture = (*winCapture)(nil)
