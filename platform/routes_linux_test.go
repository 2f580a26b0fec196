package platform

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/tun"
)

// SetRoutes changes routes by difference: the new ones are added before
// the old ones are deleted, and a route in both sets is never touched, so
// a destination kept across a reload is routed throughout.
func TestSetRoutesByDifference(t *testing.T) {
	inNewNetns(t, func() {
		kept, gone, added := netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("10.3.0.0/24")
		cfg := DefaultConfig("shtest2", []netip.Prefix{kept, gone})
		dev, _, err := tun.Open(tun.Options{Name: cfg.Device, MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		n, err := OpenCapture(cfg, quiet())
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		here, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer here.Close()
		updates := make(chan netlink.RouteUpdate, 64)
		done := make(chan struct{})
		defer close(done)
		if err := netlink.RouteSubscribeAt(here, updates, done); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := n.SetRoutes([]netip.Prefix{kept, added}); err != nil {
				t.Fatal(err)
			}
			if err := n.SetRoutes([]netip.Prefix{kept, gone}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		timeout := time.After(10 * time.Second)
		for len(got) < 12 {
			select {
			case u := <-updates:
				if u.Table != cfg.Linux.Table || u.Dst == nil {
					continue
				}
				ones, _ := u.Dst.Mask.Size()
				dst, _ := netip.AddrFromSlice(u.Dst.IP)
				op := "add "
				if u.Type == unix.RTM_DELROUTE {
					op = "del "
				}
				got = append(got, op+netip.PrefixFrom(dst.Unmap(), ones).String())
			case <-timeout:
				t.Fatalf("route changes %q: want 12", got)
			}
		}
		want := []string{}
		for range 3 {
			want = append(want, "add 10.3.0.0/24", "del 10.2.0.0/24", "add 10.2.0.0/24", "del 10.3.0.0/24")
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("route changes %q, want %q (adds before deletes; the kept route untouched)", got, want)
			}
		}
	})
}
