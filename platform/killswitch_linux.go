package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The kill switch lives in shunt's own table, beside the routes to the
// TUN:
//
//	ip route add DEST dev TUN table T                       (while shunt runs)
//	ip route add unreachable DEST table T metric 0x53680000 (always)
//	ip route add throw SERVER/32 table T metric 0x53680000  (each exempt address)
//
// The kernel picks the lowest metric of routes to the same destination, so
// while the TUN is up its routes win. When the TUN goes, by a crash or a
// stop, the kernel removes its routes with it, and the unreachable routes
// are what is left: the policy rule still selects the table, and a
// connection to a captured destination fails at once with "no route to
// host" (EHOSTUNREACH) instead of leaving through the main table. A throw
// route ends the table's look-up, so the kernel goes on to the next rule
// (main): the SSH servers stay reachable. Loopback and the host's own
// addresses never reach the table (the local table's rule comes first),
// and shunt's own marked sockets skip the policy rule.
//
// unreachable, not blackhole: a blackhole route makes a local connect fail
// with EINVAL ("invalid argument"), which reads as a bug, and silently
// drops forwarded packets (LAN gateway), so the other host waits for its
// timeout; unreachable says "no route to host" to local applications and
// sends forwarded senders an ICMP host unreachable, so both fail fast and
// clearly. prohibit (EACCES) would read as a firewall.

// guard is one of the kill switch's routes.
type guard struct {
	typ int // unix.RTN_UNREACHABLE or unix.RTN_THROW
	dst netip.Prefix
}

func (g guard) route(table int) *netlink.Route {
	return &netlink.Route{Dst: ipNet(g.dst), Table: table, Type: g.typ, Priority: KillSwitchMetric}
}

func (g guard) String() string {
	if g.typ == unix.RTN_THROW {
		return "throw " + g.dst.String()
	}
	return "unreachable " + g.dst.String()
}

// guardsFor are the kill switch's routes for the captured destinations
// want: none without the kill switch.
func (n *policyRouting) guardsFor(want map[netip.Prefix]bool) map[guard]bool {
	out := map[guard]bool{}
	if !n.cfg.KillSwitch {
		return out
	}
	for p := range want {
		out[guard{unix.RTN_UNREACHABLE, p}] = true
	}
	for _, a := range n.cfg.Exempt {
		a = a.Unmap()
		if !a.IsValid() || a.IsLoopback() || (a.Is6() && !n.have6) {
			continue
		}
		host := netip.PrefixFrom(a, a.BitLen())
		for p := range want {
			if p.Contains(a) {
				delete(out, guard{unix.RTN_UNREACHABLE, host})
				out[guard{unix.RTN_THROW, host}] = true
				break
			}
		}
	}
	return out
}

func (n *policyRouting) addGuards(want map[guard]bool) error {
	for g := range want {
		if n.guards[g] {
			continue
		}
		if err := n.h.RouteAdd(g.route(n.cfg.Linux.Table)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("kill switch: route %s (table %d): %w", g, n.cfg.Linux.Table, err)
		}
		n.guards[g] = true
	}
	return nil
}

func (n *policyRouting) removeGuards(want map[guard]bool) error {
	for g := range n.guards {
		if want[g] {
			continue
		}
		if err := n.h.RouteDel(g.route(n.cfg.Linux.Table)); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill switch: remove route %s: %w", g, err)
		}
		delete(n.guards, g)
	}
	return nil
}

// SetKillSwitch turns the kill switch on or off while the capture runs
// (a reload), with exempt as the addresses it leaves alone.
func (n *policyRouting) SetKillSwitch(on bool, exempt []netip.Addr) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cfg.KillSwitch == on && slices.Equal(n.cfg.Exempt, exempt) {
		return nil
	}
	n.cfg.KillSwitch, n.cfg.Exempt = on, slices.Clone(exempt)
	return n.applyLocked()
}

// adopt takes over what a run before left in the table: its policy rules
// (when they are the ones OpenCapture would add) and its kill switch routes. The
// rest (a rule of another shape) is removed.
func (n *policyRouting) adopt() error {
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := n.h.RuleList(fam)
		if err != nil {
			if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return fmt.Errorf("list policy rules: %w", err)
		}
		for i := range rules {
			r := &rules[i]
			if r.Table != n.cfg.Linux.Table {
				continue
			}
			if n.rules[fam] == nil && r.Priority == n.cfg.Linux.Priority && r.Invert && r.Mark == n.cfg.Linux.Mark {
				n.rules[fam] = r
				continue
			}
			if err := n.h.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove stale policy rule %v: %w", r, err)
			}
		}
		routes, err := n.h.RouteListFiltered(fam, &netlink.Route{Table: n.cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes of table %d: %w", n.cfg.Linux.Table, err)
		}
		for _, r := range routes {
			if p, ok := prefixOf(r); ok && (r.Type == unix.RTN_UNREACHABLE || r.Type == unix.RTN_THROW) && r.Priority == KillSwitchMetric {
				n.guards[guard{r.Type, p}] = true
			}
		}
	}
	return nil
}

// closeKeepingGuards is Close with the kill switch: the routes to the TUN
// go (the unreachable routes take over at once, before the device is
// gone), the rest stays.
func (n *policyRouting) closeKeepingGuards() error {
	var errs []error
	for p := range n.routes {
		r := &netlink.Route{LinkIndex: n.link.Attrs().Index, Dst: ipNet(p), Table: n.cfg.Linux.Table, Scope: netlink.SCOPE_LINK}
		if err := n.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove route %v: %w", p, err))
		}
	}
	n.routes = map[netip.Prefix]bool{}
	var dsts []string
	for g := range n.guards {
		if g.typ == unix.RTN_UNREACHABLE {
			dsts = append(dsts, g.dst.String())
		}
	}
	slices.Sort(dsts)
	n.log.WithField("unreachable", strings.Join(dsts, " ")).Warn("kill switch: the captured destinations stay unreachable until shunt starts again or `shunt cleanup` removes the kill switch")
	return errors.Join(errs...)
}

// countGuards counts the kill switch's routes in cfg.Linux.Table.
func countGuards(h *netlink.Handle, cfg Config) int {
	n := 0
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, _ := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		for _, r := range routes {
			if !isDeviceRoute(r) {
				n++
			}
		}
	}
	return n
}

// CleanUp removes everything shunt keeps in the routing configuration
// while it is not running: the policy rules that select cfg.Linux.Table and the
// table's routes (a kill switch, or what a crash left). It refuses while a
// shunt runs (a route in the table points at a device), and returns what
// it removed, as ip(8) writes it.
func CleanUp(cfg Config) ([]string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", cfg.Linux.Table, err)
		}
		if i := slices.IndexFunc(routes, isDeviceRoute); i >= 0 {
			dev := fmt.Sprint(routes[i].LinkIndex)
			if l, err := h.LinkByIndex(routes[i].LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			return nil, fmt.Errorf("shunt is running (routing table %d points at device %s): stop it with shunt down first", cfg.Linux.Table, dev)
		}
	}
	return clearTableSaying(h, cfg)
}

// KillSwitchRoutes lists the kill switch's routes in cfg.Linux.Table, as ip(8)
// writes them (for status and tests).
func KillSwitchRoutes(cfg Config) ([]string, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	var out []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", cfg.Linux.Table, err)
		}
		for i := range routes {
			if !isDeviceRoute(routes[i]) {
				out = append(out, describeRoute(h, &routes[i]))
			}
		}
	}
	return out, nil
}

func prefixOf(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		if r.Family == netlink.FAMILY_V6 {
			return netip.MustParsePrefix("::/0"), true
		}
		return netip.MustParsePrefix("0.0.0.0/0"), true
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// describeRoute writes r as ip route does.
func describeRoute(h *netlink.Handle, r *netlink.Route) string {
	dst := "?"
	if p, ok := prefixOf(*r); ok {
		dst = p.String()
	}
	switch r.Type {
	case unix.RTN_UNREACHABLE:
		return fmt.Sprintf("route unreachable %s table %d metric %d", dst, r.Table, r.Priority)
	case unix.RTN_THROW:
		return fmt.Sprintf("route throw %s table %d metric %d", dst, r.Table, r.Priority)
	case unix.RTN_BLACKHOLE:
		return fmt.Sprintf("route blackhole %s table %d", dst, r.Table)
	}
	dev := fmt.Sprintf("index %d", r.LinkIndex)
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	return fmt.Sprintf("route %s dev %s table %d", dst, dev, r.Table)
}

// describeRule writes r as ip rule does.
func describeRule(r *netlink.Rule) string {
	fam := "-4"
	if r.Family == netlink.FAMILY_V6 {
		fam = "-6"
	}
	not := ""
	if r.Invert {
		not = "not "
	}
	return fmt.Sprintf("rule %s priority %d %sfwmark %#x lookup %d", fam, r.Priority, not, r.Mark, r.Table)
}
