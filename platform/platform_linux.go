package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	shunterrs "github.com/shunt-dev/shunt/internal/errs"
)

// Linux capture: the routes live in their own table, selected by one policy
// rule per address family:
//
//	ip rule add priority P not fwmark M lookup T
//	ip route add DEST dev TUN table T
//
// shunt's own sockets carry mark M (SO_MARK), skip the rule and follow the
// main table, so capturing 0.0.0.0/0 cannot loop the SSH connection back
// into the TUN. Local addresses are still delivered: the local table's rule
// (priority 0) comes first.
//
// With the kill switch (Config.KillSwitch), each captured destination also
// has an unreachable route in the table, behind the TUN's (a higher
// metric), and each exempt address a throw route, which sends it on to the
// main table (killswitch_linux.go).

// policyRouting is Linux's capture: the routes and policy rules installed.
type policyRouting struct {
	cfg   Config
	h     *netlink.Handle
	log   logrus.FieldLogger
	link  netlink.Link
	have6 bool

	mu     sync.Mutex
	rules  map[int]*netlink.Rule // by family
	routes map[netip.Prefix]bool
	// want are the captured destinations SetRoutes was given last.
	want []netip.Prefix
	// guards are the kill switch's routes installed.
	guards map[guard]bool
}

// Prepare runs before the TUN is created. It refuses to start when the
// device already exists (another shunt runs with the same name), and
// removes what a crashed run left behind: policy rules that select the
// table, and the table's routes. With cfg.KillSwitch, a kill switch left
// in place (by a crash or a stop) stays until OpenCapture replaces it, so the
// captured destinations stay unreachable throughout the start.
func Prepare(cfg Config, log logrus.FieldLogger) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	if _, err := h.LinkByName(cfg.Device); err == nil {
		return fmt.Errorf("network device %q exists already: is another shunt running? Stop it first", cfg.Device)
	}
	// Routes go when their device goes, so routes still in the table
	// belong to a live device: another shunt is running (under another
	// device name). Its rules are not leftovers; leave them alone.
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes of table %d: %w", cfg.Linux.Table, err)
		}
		if i := slices.IndexFunc(routes, isDeviceRoute); i >= 0 {
			dev := fmt.Sprint(routes[i].LinkIndex)
			if l, err := h.LinkByIndex(routes[i].LinkIndex); err == nil {
				dev = l.Attrs().Name
			}
			return fmt.Errorf("routing table %d is in use by device %s: another shunt is running; stop it first", cfg.Linux.Table, dev)
		}
	}
	if cfg.KillSwitch {
		if n := countGuards(h, cfg); n > 0 {
			log.WithField("routes", n).Info("kill switch: the captured destinations stay unreachable, as the last run left them, until the capture is up again")
		}
		return nil
	}
	n, err := clearTable(h, cfg)
	if err != nil {
		return err
	}
	if n > 0 {
		log.WithField("removed", n).Warn("removed routing rules and routes left behind by an earlier run that did not stop cleanly")
	}
	return nil
}

// isDeviceRoute: a route to a device (the TUN), not one of the kill
// switch's (which IPv6 shows on lo).
func isDeviceRoute(r netlink.Route) bool { return r.Type == unix.RTN_UNICAST && r.LinkIndex > 0 }

// clearTable deletes every rule selecting cfg.Linux.Table and every route in it.
func clearTable(h *netlink.Handle, cfg Config) (int, error) {
	removed, err := clearTableSaying(h, cfg)
	return len(removed), err
}

// clearTableSaying is clearTable, and says what it removed, as ip(8)
// would write it.
func clearTableSaying(h *netlink.Handle, cfg Config) ([]string, error) {
	var removed []string
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, err := h.RuleList(fam)
		if err != nil {
			if fam == netlink.FAMILY_V6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue
			}
			return removed, fmt.Errorf("list policy rules: %w", err)
		}
		for i := range rules {
			if rules[i].Table == cfg.Linux.Table {
				if err := h.RuleDel(&rules[i]); err != nil {
					return removed, fmt.Errorf("remove stale policy rule %v: %w", rules[i], err)
				}
				removed = append(removed, describeRule(&rules[i]))
			}
		}
		routes, err := h.RouteListFiltered(fam, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return removed, fmt.Errorf("list routes of table %d: %w", cfg.Linux.Table, err)
		}
		for i := range routes {
			if err := h.RouteDel(&routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
				return removed, fmt.Errorf("remove stale route %v: %w", routes[i].Dst, err)
			}
			removed = append(removed, describeRoute(h, &routes[i]))
		}
	}
	return removed, nil
}

// OpenCapture gives the device its addresses, brings it up, and installs the routes
// and policy rules. On error it undoes what it did.
func OpenCapture(cfg Config, log logrus.FieldLogger) (_ Capture, err error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	n := &policyRouting{cfg: cfg, h: h, log: log, rules: map[int]*netlink.Rule{}, routes: map[netip.Prefix]bool{}, guards: map[guard]bool{}}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	link, err := h.LinkByName(cfg.Device)
	if err != nil {
		return nil, fmt.Errorf("find TUN device %q: %w", cfg.Device, err)
	}
	have6 := false
	for _, p := range TUNAddrs() {
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once
		}
		if err := h.AddrAdd(link, addr); err != nil {
			if p.Addr().Is6() {
				log.WithError(err).Warn("IPv6 is unavailable on the TUN device; IPv6 destinations are not captured")
				continue
			}
			return nil, fmt.Errorf("address %v on %s: %w", p, cfg.Device, err)
		}
		have6 = have6 || p.Addr().Is6()
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", cfg.Device, err)
	}
	n.link, n.have6 = link, have6
	if cfg.KillSwitch {
		// What the last run left becomes this run's, and SetRoutes
		// changes only the difference.
		if err := n.adopt(); err != nil {
			return nil, err
		}
	}
	if err := n.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return n, nil
}

// SetRoutes makes the captured destinations exactly routes: it adds what is
// new, removes what is gone, and keeps one policy rule per address family
// that has routes. Host-name rules call it when DNS answers change. With
// the kill switch, the unreachable and throw routes follow too, each added
// before anything is removed.
func (n *policyRouting) SetRoutes(routes []netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.want = slices.Clone(routes)
	return n.applyLocked()
}

// applyLocked makes the table and the rules what n.want and n.cfg ask for.
func (n *policyRouting) applyLocked() error {
	want := map[netip.Prefix]bool{}
	fams := map[int]bool{}
	for _, p := range n.want {
		p = p.Masked()
		if p.Addr().Is6() && !n.have6 {
			continue
		}
		want[p] = true
		fams[family(p)] = true
	}
	guards := n.guardsFor(want)
	// An exempt address stays captured while shunt runs: its route to
	// the TUN comes before its throw route.
	for g := range guards {
		if g.typ == unix.RTN_THROW {
			want[g.dst] = true
		}
	}
	for p := range want {
		if n.routes[p] {
			continue
		}
		r := &netlink.Route{LinkIndex: n.link.Attrs().Index, Dst: ipNet(p), Table: n.cfg.Linux.Table, Scope: netlink.SCOPE_LINK}
		if err := n.h.RouteAdd(r); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("route %v to %s (table %d): %w", p, n.cfg.Device, n.cfg.Linux.Table, err)
		}
		n.routes[p] = true
	}
	if err := n.addGuards(guards); err != nil {
		return err
	}
	for p := range n.routes {
		if want[p] {
			continue
		}
		r := &netlink.Route{LinkIndex: n.link.Attrs().Index, Dst: ipNet(p), Table: n.cfg.Linux.Table, Scope: netlink.SCOPE_LINK}
		if err := n.h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove route %v: %w", p, err)
		}
		delete(n.routes, p)
	}
	if err := n.removeGuards(guards); err != nil {
		return err
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		switch {
		case fams[fam] && n.rules[fam] == nil:
			rule := n.policyRule(fam)
			if err := n.h.RuleAdd(rule); err != nil {
				return fmt.Errorf("policy rule (priority %d, table %d): %w", n.cfg.Linux.Priority, n.cfg.Linux.Table, err)
			}
			n.rules[fam] = rule
		case !fams[fam] && n.rules[fam] != nil:
			if err := n.h.RuleDel(n.rules[fam]); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove policy rule: %w", err)
			}
			delete(n.rules, fam)
		}
	}
	return nil
}

// policyRule is the rule of family fam: priority P, not fwmark M, lookup T.
func (n *policyRouting) policyRule(fam int) *netlink.Rule {
	rule := netlink.NewRule()
	rule.Family = fam
	rule.Priority = n.cfg.Linux.Priority
	rule.Table = n.cfg.Linux.Table
	rule.Mark = n.cfg.Linux.Mark
	mask := uint32(0xffffffff)
	rule.Mask = &mask
	rule.Invert = true
	return rule
}

func family(p netip.Prefix) int {
	if p.Addr().Is6() {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}

// Close removes the policy rules, then the routes. The TUN device itself
// goes when its file is closed. With the kill switch it removes only the
// routes to the TUN: the policy rules and the unreachable routes stay, and
// keep the captured destinations unreachable until the next OpenCapture or
// CleanUp.
func (n *policyRouting) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.h.Close()
	if n.cfg.KillSwitch && len(n.guards) > 0 {
		return n.closeKeepingGuards()
	}
	var errs []error
	for _, r := range n.rules {
		if err := n.h.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove policy rule: %w", err))
		}
	}
	n.rules = map[int]*netlink.Rule{}
	n.routes = map[netip.Prefix]bool{}
	n.guards = map[guard]bool{}
	if _, err := clearTable(n.h, n.cfg); err != nil {
		errs = append(errs, err)
	}
	return shunterrs.Join(errs...)
}
