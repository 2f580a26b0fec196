package platform

import (
	"net/netip"
	"sync"
	"testing"
	"time"
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

// The watch of the systems that only say "something changed": a burst of
// messages makes one look at the state, a change that matters one call of
// OnChange with its reason, one that does not (the same state) none; and
// Close unsubscribes and waits for the watch to end.
func TestWatchSnapshots(t *testing.T) {
	en0, en1 := primaryIf{Index: 4, Name: "en0"}, primaryIf{Index: 5, Name: "en1"}
	var (
		mu      sync.Mutex
		state   = newSnapshot(en0, en0, nil, "utun4")
		looked  int
		changed func()
		stopped bool
	)
	subscribe := func(f func()) (func() error, error) {
		changed = f
		return func() error { mu.Lock(); stopped = true; mu.Unlock(); return nil }, nil
	}
	snapshot := func() (netSnapshot, bool) {
		mu.Lock()
		defer mu.Unlock()
		looked++
		return state, true
	}
	calls := make(chan string, 10)
	w, err := watchSnapshots(NetWatchOptions{Debounce: time.Millisecond, OnChange: func(why string) { calls <- why }}, subscribe, snapshot)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing changed: a message alone calls nobody. Then the default
	// route moves, in a burst of messages.
	changed()
	for range 5 {
		mu.Lock()
		state = newSnapshot(en1, en0, nil, "utun4")
		mu.Unlock()
		changed()
	}
	if got := <-calls; got != "IPv4 default route en0 → en1" {
		t.Errorf("reason %q", got)
	}
	// The same state again: the next call is the next real change's.
	changed()
	mu.Lock()
	state = newSnapshot(en1, primaryIf{}, nil, "utun4")
	mu.Unlock()
	changed()
	if got := <-calls; got != "IPv6 default route en0 → none" {
		t.Errorf("reason %q", got)
	}
	w.Close()
	mu.Lock()
	defer mu.Unlock()
	if !stopped {
		t.Error("Close did not unsubscribe")
	}
	if len(calls) != 0 {
		t.Errorf("more calls: %q", <-calls)
	}
}
