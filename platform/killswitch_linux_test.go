package platform

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/tun"
)

// killSwitchNet gives the namespace a main route for the captured range,
// as a real host's default route would be: a second TUN device holding
// 10.9.0.1/16, so that without shunt 10.9.x.x leaves through it.
func killSwitchNet(t *testing.T) {
	t.Helper()
	main, _, err := tun.Open(tun.Options{Name: "ksmain0", MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { main.Close() })
	d, err := netlink.LinkByName("ksmain0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.9.0.1/16")
	if err := netlink.AddrAdd(d, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
}

// routeVia says where the kernel sends an unmarked packet to dst: the
// device's name, or the error ("no route to host").
func routeVia(t *testing.T, dst string) string {
	t.Helper()
	rs, err := netlink.RouteGet(net.ParseIP(dst))
	if err != nil {
		if errors.Is(err, unix.EHOSTUNREACH) {
			return "unreachable"
		}
		return err.Error()
	}
	l, err := netlink.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return err.Error()
	}
	return l.Attrs().Name
}

// connectErr connects, unmarked, to dst:80 as an application would.
func connectErr(dst string) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(dst, "80"), 5*time.Second)
	if err == nil {
		c.Close()
	}
	return err
}

// A crash (the TUN deleted) leaves the captured destinations unreachable,
// not on the main route; the SSH server's address and loopback stay
// reachable; a new OpenCapture takes over the kill switch and CleanUp restores
// normal routing, saying what it removed.
func TestKillSwitchSurvivesTheDevice(t *testing.T) {
	inNewNetns(t, func() {
		killSwitchNet(t)
		cfg := DefaultConfig("shks0", []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16"), netip.MustParsePrefix("fd00:9::/64")})
		cfg.KillSwitch = true
		cfg.Exempt = []netip.Addr{netip.MustParseAddr("10.9.0.22"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("127.0.0.1")}
		if got := routeVia(t, "10.9.5.5"); got != "ksmain0" {
			t.Fatalf("before shunt, 10.9.5.5 goes via %s, want ksmain0 (the test is wrong)", got)
		}
		if err := Prepare(cfg, quiet()); err != nil {
			t.Fatal(err)
		}
		dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		n, err := OpenCapture(cfg, quiet())
		if err != nil {
			dev.Close()
			t.Fatal(err)
		}
		for dst, want := range map[string]string{"10.9.5.5": "shks0", "10.9.0.22": "shks0", "fd00:9::5": "shks0", "127.0.0.1": "lo"} {
			if got := routeVia(t, dst); got != want {
				t.Errorf("while running, %s goes via %s, want %s", dst, got, want)
			}
		}
		ks, err := KillSwitchRoutes(cfg)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ks)
		want := []string{
			"route throw 10.9.0.22/32 table 21352 metric 1399324672",
			"route unreachable 10.9.0.0/16 table 21352 metric 1399324672",
			"route unreachable fd00:9::/64 table 21352 metric 1399324672",
		}
		if !slices.Equal(ks, want) {
			t.Errorf("kill switch routes:\n%s\nwant:\n%s", strings.Join(ks, "\n"), strings.Join(want, "\n"))
		}

		// The crash: the device goes, and its routes with it.
		dev.Close()
		waitGone(t, cfg.Device)
		for dst, want := range map[string]string{"10.9.5.5": "unreachable", "fd00:9::5": "unreachable", "10.9.0.22": "ksmain0", "127.0.0.1": "lo"} {
			if got := routeVia(t, dst); got != want {
				t.Errorf("after the crash, %s goes via %s, want %s", dst, got, want)
			}
		}
		if err := connectErr("10.9.5.5"); !errors.Is(err, unix.EHOSTUNREACH) {
			t.Errorf("an application's connect after the crash: %v, want no route to host", err)
		}
		if _, err := CleanUp(cfg); err != nil {
			// n still holds its netlink handle; the routes are gone.
			t.Fatalf("CleanUp with no device: %v", err)
		}
		n.(*policyRouting).h.Close()
		if got := routeVia(t, "10.9.5.5"); got != "ksmain0" {
			t.Errorf("after CleanUp, 10.9.5.5 goes via %s, want ksmain0", got)
		}
		assertNoTrace(t, cfg)
	})
}

// A clean stop with the kill switch keeps the policy rules and the
// unreachable routes; the next start adopts them without a gap, and its
// stop without the kill switch removes everything.
func TestKillSwitchCleanStopAndRestart(t *testing.T) {
	inNewNetns(t, func() {
		cfg, dev, n := killSwitchUp(t, "shks1")
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		// Unreachable before the device is gone: Close took the TUN's
		// routes away itself.
		if got := routeVia(t, "10.9.5.5"); got != "unreachable" {
			t.Errorf("after a clean stop, 10.9.5.5 goes via %s, want unreachable", got)
		}
		dev.Close()
		waitGone(t, cfg.Device)
		if got := routeVia(t, "10.9.5.5"); got != "unreachable" {
			t.Errorf("after the device went, 10.9.5.5 goes via %s, want unreachable", got)
		}

		// The next start: Prepare leaves the kill switch, OpenCapture adopts
		// it (one rule, not two), and the capture is back.
		if err := Prepare(cfg, quiet()); err != nil {
			t.Fatal(err)
		}
		if got := routeVia(t, "10.9.5.5"); got != "unreachable" {
			t.Errorf("between Prepare and OpenCapture, 10.9.5.5 goes via %s, want unreachable", got)
		}
		dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		n, err = OpenCapture(cfg, quiet())
		if err != nil {
			t.Fatal(err)
		}
		if got := routeVia(t, "10.9.5.5"); got != "shks1" {
			t.Errorf("after the restart, 10.9.5.5 goes via %s, want shks1", got)
		}
		rules, _ := netlink.RuleList(netlink.FAMILY_V4)
		if c := countRules(rules, cfg.Linux.Table); c != 1 {
			t.Errorf("%d policy rules select the table after the restart, want 1", c)
		}
		if _, err := CleanUp(cfg); err == nil || !strings.Contains(err.Error(), "shunt is running") {
			t.Errorf("CleanUp while running: %v", err)
		}
		// Turned off (a reload), then a stop removes everything.
		if err := n.SetKillSwitch(false, nil); err != nil {
			t.Fatal(err)
		}
		if ks, _ := KillSwitchRoutes(cfg); len(ks) != 0 {
			t.Errorf("kill switch routes after turning it off: %v", ks)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		assertNoTrace(t, cfg)
		if got := routeVia(t, "10.9.5.5"); got != "ksmain0" {
			t.Errorf("after a stop without the kill switch, 10.9.5.5 goes via %s, want ksmain0", got)
		}
	})
}

// CleanUp says what it removed.
func TestCleanUpSays(t *testing.T) {
	inNewNetns(t, func() {
		cfg, dev, n := killSwitchUp(t, "shks2")
		n.Close()
		dev.Close()
		waitGone(t, cfg.Device)
		removed, err := CleanUp(cfg)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"rule -4 priority 5368 not fwmark 0x5368 lookup 21352", "route unreachable 10.9.0.0/16 table 21352 metric 1399324672"}
		if !slices.Equal(removed, want) {
			t.Errorf("CleanUp removed %q, want %q", removed, want)
		}
		if removed, err := CleanUp(cfg); err != nil || len(removed) != 0 {
			t.Errorf("a second CleanUp: %q, %v", removed, err)
		}
	})
}

func countRules(rules []netlink.Rule, table int) int {
	n := 0
	for _, r := range rules {
		if r.Table == table {
			n++
		}
	}
	return n
}

// waitGone waits for the kernel to remove the device (and its routes).
func waitGone(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := netlink.LinkByName(name); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s still there 10 s after its file was closed", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killSwitchUp makes the test network and sets up device name with the
// kill switch, capturing 10.9.0.0/16.
func killSwitchUp(t *testing.T, name string) (Config, tun.Device, Capture) {
	t.Helper()
	killSwitchNet(t)
	cfg := DefaultConfig(name, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/16")})
	cfg.KillSwitch = true
	dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	n, err := OpenCapture(cfg, quiet())
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	return cfg, dev, n
}
