package platform

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"

	"github.com/shunt-dev/shunt/internal/testns"
	"github.com/shunt-dev/shunt/tun"
)

// inNewNetns runs f in a network namespace of its own (testns.Run).
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	testns.Run(t, f)
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func TestSetupAndClose(t *testing.T) {
	inNewNetns(t, func() {
		cfg := DefaultConfig("shtest0", []netip.Prefix{
			netip.MustParsePrefix("10.1.0.0/24"),
			netip.MustParsePrefix("0.0.0.0/0"),
			netip.MustParsePrefix("fd00::/64"),
		})
		if err := Prepare(cfg, quiet()); err != nil {
			t.Fatal(err)
		}
		dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 65520})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		if err := Prepare(cfg, quiet()); err == nil || !strings.Contains(err.Error(), "is another shunt running?") {
			t.Errorf("Prepare with the device present: %v", err)
		}
		n, err := OpenCapture(cfg, quiet())
		if err != nil {
			t.Fatal(err)
		}
		link, _ := netlink.LinkByName(cfg.Device)
		if link.Attrs().MTU != 65520 || link.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("link %+v: want up with MTU 65520", link.Attrs())
		}
		routes, _ := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		var dsts []string
		for _, r := range routes {
			if r.LinkIndex != link.Attrs().Index {
				t.Errorf("route %v is not on the TUN", r.Dst)
			}
			dsts = append(dsts, r.Dst.String())
		}
		if got := strings.Join(dsts, " "); !strings.Contains(got, "10.1.0.0/24") || !strings.Contains(got, "fd00::/64") || len(dsts) != 3 {
			t.Errorf("routes in table %d: %v", cfg.Linux.Table, dsts)
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			rules, _ := netlink.RuleList(fam)
			found := 0
			for _, r := range rules {
				if r.Table == cfg.Linux.Table {
					found++
					if !r.Invert || r.Mark != cfg.Linux.Mark || r.Priority != cfg.Linux.Priority {
						t.Errorf("rule %+v: want priority %d not fwmark %#x", r, cfg.Linux.Priority, cfg.Linux.Mark)
					}
				}
			}
			if found != 1 {
				t.Errorf("family %d: %d rules select table %d, want 1", fam, found, cfg.Linux.Table)
			}
		}
		// Routes follow changes: one route goes, one comes, and the IPv6
		// rule goes with the last IPv6 route.
		if err := n.SetRoutes([]netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.7.7.7/32")}); err != nil {
			t.Fatal(err)
		}
		routes, _ = netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
		dsts = nil
		for _, r := range routes {
			dsts = append(dsts, r.Dst.String())
		}
		if got := strings.Join(dsts, " "); got != "10.1.0.0/24 10.7.7.7/32" {
			t.Errorf("routes after SetRoutes: %s", got)
		}
		if rules6, _ := netlink.RuleList(netlink.FAMILY_V6); slices.ContainsFunc(rules6, func(r netlink.Rule) bool { return r.Table == cfg.Linux.Table }) {
			t.Error("the IPv6 policy rule stayed without IPv6 routes")
		}
		other := cfg
		other.Device = "shtest9"
		if err := Prepare(other, quiet()); err == nil || !strings.Contains(err.Error(), "is in use by device shtest0") {
			t.Errorf("a second instance under another name: %v", err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		assertNoTrace(t, cfg)
	})
}

func TestPrepareRemovesLeftovers(t *testing.T) {
	inNewNetns(t, func() {
		cfg := DefaultConfig("shtest1", []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")})
		dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenCapture(cfg, quiet()); err != nil {
			t.Fatal(err)
		}
		dev.Close() // a crash: the device goes, the policy rule stays
		rules, _ := netlink.RuleList(netlink.FAMILY_V4)
		left := 0
		for _, r := range rules {
			if r.Table == cfg.Linux.Table {
				left++
			}
		}
		if left != 1 {
			t.Fatalf("%d rules left after the crash, want 1 (the test is wrong)", left)
		}
		if err := Prepare(cfg, quiet()); err != nil {
			t.Fatal(err)
		}
		assertNoTrace(t, cfg)
	})
}

func assertNoTrace(t *testing.T, cfg Config) {
	t.Helper()
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rules, _ := netlink.RuleList(fam)
		for _, r := range rules {
			if r.Table == cfg.Linux.Table {
				t.Errorf("rule left: %+v", r)
			}
		}
	}
	routes, _ := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: cfg.Linux.Table}, netlink.RT_FILTER_TABLE)
	for _, r := range routes {
		t.Errorf("route left: %v", r.Dst)
	}
}

// Marked sockets ignore the capture: with 0.0.0.0/0 routed to the TUN, a
// bypass dial to a local listener on another address still gets through
// the main table.
func TestBypassSetsMark(t *testing.T) {
	inNewNetns(t, func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		b, err := NewBypass(BypassOptions{Mark: DefaultMark})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		c, err := b.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, _ := c.(*net.TCPConn).SyscallConn()
		var mark int
		raw.Control(func(fd uintptr) { mark, _ = getsockoptMark(int(fd)) })
		if mark != DefaultMark {
			t.Fatalf("SO_MARK = %#x, want %#x", mark, DefaultMark)
		}
	})
}
