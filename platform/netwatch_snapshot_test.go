package platform

import (
	"net/netip"
	"testing"
)

// What counts as a change of the network where the system only says that
// the routing table changed: the primary interface of a family, or an
// address of an interface, but never shunt's own device or link-local
// IPv6 addresses, and not the order the addresses are listed in.
func TestSnapshotChange(t *testing.T) {
	en0, en1 := primaryIf{Index: 4, Name: "en0"}, primaryIf{Index: 5, Name: "en1"}
	a := func(ifc, p string) ifAddr { return ifAddr{Interface: ifc, Prefix: netip.MustParsePrefix(p)} }
	home := []ifAddr{a("en0", "192.168.1.7/24"), a("en0", "fe80::1/64"), a("utun4", "169.254.83.1/32"), a("lo0", "127.0.0.1/8")}
	base := newSnapshot(en0, en0, home, "utun4")
	for _, tc := range []struct {
		name   string
		p4, p6 primaryIf
		addrs  []ifAddr
		want   string
	}{
		{"nothing", en0, en0, home, ""},
		{"the same addresses in another order", en0, en0, []ifAddr{home[3], home[2], home[1], home[0]}, ""},
		{"shunt's device got another address", en0, en0, append(home[:4:4], a("utun4", "fd53:6875:6e74::1/128")), ""},
		{"a link-local address came", en0, en0, append(home[:4:4], a("en1", "fe80::2/64")), ""},
		{"Wi-Fi to cable", en1, en1, []ifAddr{a("en1", "10.0.0.9/24"), home[3]},
			"IPv4 default route en0 → en1; IPv6 default route en0 → en1; address removed: en0 192.168.1.7/24; address added: en1 10.0.0.9/24"},
		{"a new lease on the same interface", en0, en0, []ifAddr{a("en0", "192.168.1.8/24"), home[3]},
			"address removed: en0 192.168.1.7/24; address added: en0 192.168.1.8/24"},
		{"IPv6 default gone", en0, primaryIf{}, home, "IPv6 default route en0 → none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.change(newSnapshot(tc.p4, tc.p6, tc.addrs, "utun4")); got != tc.want {
				t.Errorf("change:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
