package platform

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/tun"
)

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestRouteChange(t *testing.T) {
	const table, tun = DefaultTable, 7
	def4 := mustCIDR(t, "0.0.0.0/0")
	for _, tc := range []struct {
		name string
		u    netlink.RouteUpdate
		want string // "" for no change
	}{
		{"default added", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: unix.RT_TABLE_MAIN, Gw: net.ParseIP("192.0.2.1"), LinkIndex: 2}}, "default route added (via 192.0.2.1)"},
		{"default as 0.0.0.0/0 removed", netlink.RouteUpdate{Type: unix.RTM_DELROUTE, Route: netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: def4, LinkIndex: 2}}, "default route removed"},
		{"another table's default", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: 100, LinkIndex: 2}}, "default route added"},
		{"shunt's table", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: table, Dst: def4, LinkIndex: tun}}, ""},
		{"through the TUN", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: unix.RT_TABLE_MAIN, LinkIndex: tun}}, ""},
		{"local table", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: 2}}, ""},
		{"not a default route", netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: mustCIDR(t, "10.0.0.0/8"), LinkIndex: 2}}, ""},
	} {
		got, ok := routeChange(tc.u, table, tun)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

func TestAddrChange(t *testing.T) {
	const tun = 7
	if why, ok := addrChange(netlink.AddrUpdate{LinkAddress: *mustCIDR(t, "192.0.2.5/24"), LinkIndex: 1 << 20, NewAddr: false}, tun); !ok || why != "address removed: 192.0.2.5/24" {
		t.Errorf("removed: %q, %v", why, ok)
	}
	if why, ok := addrChange(netlink.AddrUpdate{LinkAddress: *mustCIDR(t, "2001:db8::5/64"), LinkIndex: 1 << 20, NewAddr: true}, tun); !ok || why != "address added: 2001:db8::5/64" {
		t.Errorf("added: %q, %v", why, ok)
	}
	for _, u := range []netlink.AddrUpdate{
		{LinkAddress: *mustCIDR(t, "169.254.83.1/32"), LinkIndex: tun, NewAddr: true},
		{LinkAddress: *mustCIDR(t, "127.0.0.2/8"), LinkIndex: 1, NewAddr: true},
		{LinkAddress: *mustCIDR(t, "::1/128"), LinkIndex: 1},
	} {
		if why, ok := addrChange(u, tun); ok {
			t.Errorf("%+v: a change (%q), want none", u, why)
		}
	}
}

// In a namespace of its own: changes to the TUN device's addresses and
// to shunt's table are not reported; an address and a default route on
// another interface are, gathered into one call.
func TestWatchNetwork(t *testing.T) {
	inNewNetns(t, func() {
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		// Two TUN devices: one as shunt's, one as the network's
		// interface (dummy links need a module not always there).
		var links []netlink.Link
		for _, name := range []string{"shnwt0", "shnwe0"} {
			dev, _, err := tun.Open(tun.Options{Name: name, MTU: 1500})
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			l, err := netlink.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := netlink.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
			links = append(links, l)
		}
		tunLike, eth := links[0], links[1]
		changes := make(chan string, 16)
		w, err := WatchNetwork(NetWatchOptions{Device: "shnwt0", Debounce: 200 * time.Millisecond, OnChange: func(why string) { changes <- why }, Log: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		// Shunt's own: its device's address, its table's routes.
		if err := netlink.AddrAdd(tunLike, &netlink.Addr{IPNet: mustCIDR(t, "169.254.83.1/32")}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{Dst: mustCIDR(t, "0.0.0.0/0"), LinkIndex: tunLike.Attrs().Index, Table: DefaultTable}); err != nil {
			t.Fatal(err)
		}
		// The network's.
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: mustCIDR(t, "192.0.2.5/24")}); err != nil {
			t.Fatal(err)
		}
		if err := netlink.RouteAdd(&netlink.Route{Gw: net.ParseIP("192.0.2.1"), LinkIndex: eth.Attrs().Index}); err != nil {
			t.Fatal(err)
		}
		var got []string
		deadline := time.After(20 * time.Second)
		for !strings.Contains(strings.Join(got, "; "), "default route added (via 192.0.2.1)") {
			select {
			case why := <-changes:
				got = append(got, why)
			case <-deadline:
				t.Fatalf("changes %q: want the default route", got)
			}
		}
		all := strings.Join(got, "; ")
		if !strings.Contains(all, "address added: 192.0.2.5/24") {
			t.Errorf("changes %q: want the address", all)
		}
		if strings.Contains(all, "169.254.83.1") || strings.Count(all, "default route") != 1 {
			t.Errorf("changes %q: shunt's own device and table are reported", all)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
