package platform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"
)

func defRoute(dst string, index, metric, ifMetric uint32, up bool) winRoute {
	return winRoute{LUID: uint64(index) << 8, Index: index, Dst: netip.MustParsePrefix(dst), Metric: metric, IfMetric: ifMetric, Up: up, Alias: fmt.Sprintf("eth%d", index)}
}

// The primary interface is the default route's of the lowest metric,
// route's and interface's added up, on an interface that is up.
func TestPickPrimary(t *testing.T) {
	for _, tt := range []struct {
		name   string
		routes []winRoute
		v6     bool
		want   uint32 // index; 0: none
	}{
		{"none", nil, false, 0},
		{"one", []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true)}, false, 3},
		{"sum decides", []winRoute{defRoute("0.0.0.0/0", 3, 0, 50, true), defRoute("0.0.0.0/0", 4, 10, 25, true)}, false, 4},
		{"route metric alone does not", []winRoute{defRoute("0.0.0.0/0", 3, 5, 50, true), defRoute("0.0.0.0/0", 4, 10, 25, true)}, false, 4},
		{"down interface skipped", []winRoute{defRoute("0.0.0.0/0", 3, 0, 5, false), defRoute("0.0.0.0/0", 4, 10, 25, true)}, false, 4},
		{"tie: lower index", []winRoute{defRoute("0.0.0.0/0", 9, 0, 25, true), defRoute("0.0.0.0/0", 4, 0, 25, true)}, false, 4},
		{"family", []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true), defRoute("::/0", 5, 0, 25, true)}, true, 5},
		{"no IPv6 default", []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true)}, true, 0},
		{"not a default route", []winRoute{defRoute("0.0.0.0/1", 3, 0, 0, true)}, false, 0},
		{"no overflow", []winRoute{defRoute("0.0.0.0/0", 3, 0xffffffff, 0xffffffff, true), defRoute("0.0.0.0/0", 4, 0xfffffff0, 0, true)}, false, 4},
	} {
		r, ok := pickPrimary(tt.routes, tt.v6)
		if r.Index != tt.want || ok != (tt.want != 0) {
			t.Errorf("%s: picked %d (%v), want %d", tt.name, r.Index, ok, tt.want)
		}
	}
}

// IP_UNICAST_IF takes the index in network byte order, IPV6_UNICAST_IF in
// host order: the bytes setsockopt reads from the int differ.
func TestUnicastIfOption(t *testing.T) {
	level, name, value := unicastIfOption(false, 0x0102)
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], uint32(value))
	if level != 0 || name != 31 || b != [4]byte{0, 0, 1, 2} {
		t.Errorf("IPv4: level %d, option %d, bytes %v; want 0, 31, [0 0 1 2] (network order)", level, name, b)
	}
	level, name, value = unicastIfOption(true, 0x0102)
	if level != 41 || name != 31 || value != 0x0102 {
		t.Errorf("IPv6: level %d, option %d, value %#x; want 41, 31, 0x102", level, name, value)
	}
	// An index with the high bit set survives a 32-bit int.
	if _, _, v := unicastIfOption(true, 0x80000001); uint32(v) != 0x80000001 {
		t.Errorf("IPv6 index 0x80000001: value %#x", v)
	}
}

// sockopts records setsockopt calls.
type sockopts struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (s *sockopts) set(fd uintptr, level, name, value int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, fmt.Sprintf("fd %d level %d option %d value %#x", fd, level, name, uint32(value)))
	return s.err
}

func (s *sockopts) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := strings.Join(s.calls, "\n")
	s.calls = nil
	return c
}

// Each socket is bound to its family's primary interface, which follows
// the default routes as they change; close stops following.
func TestWinBypassFollowsDefaultRoute(t *testing.T) {
	ip := newFakeIPHelper()
	ip.defaults = []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true), defRoute("::/0", 3, 0, 25, true)}
	var so sockopts
	log, hook := test.NewNullLogger()
	b, err := newWinBypass(ip, so.set, log)
	if err != nil {
		t.Fatal(err)
	}
	v4 := func(idx uint32) string {
		_, _, v := unicastIfOption(false, idx)
		return fmt.Sprintf("level 0 option 31 value %#x", uint32(v))
	}
	for _, tt := range []struct{ network, address, want string }{
		{"tcp4", "192.0.2.1:22", "fd 5 " + v4(3)},
		{"udp4", "192.0.2.53:53", "fd 5 " + v4(3)},
		{"tcp6", "[2001:db8::1]:22", "fd 5 level 41 option 31 value 0x3"},
		{"tcp", "192.0.2.1:22", "fd 5 " + v4(3)},
		{"tcp", "[2001:db8::1]:22", "fd 5 level 41 option 31 value 0x3"},
	} {
		if err := b.control(tt.network, tt.address, fakeRawConn{5}); err != nil {
			t.Fatalf("%s %s: %v", tt.network, tt.address, err)
		}
		if got := so.take(); got != tt.want {
			t.Errorf("%s %s: %s, want %s", tt.network, tt.address, got, tt.want)
		}
	}

	// Loopback and link-local sockets stay unbound.
	for _, a := range []string{"127.0.0.1:22", "[::1]:22", "[fe80::1%3]:22", "169.254.1.1:22"} {
		if err := b.control("tcp", a, fakeRawConn{5}); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	if got := so.take(); got != "" {
		t.Errorf("loopback and link-local sockets bound: %s", got)
	}

	// Wi-Fi comes, with a better metric; IPv6 goes.
	hook.Reset()
	ip.setDefaults(defRoute("0.0.0.0/0", 3, 0, 25, true), defRoute("0.0.0.0/0", 8, 0, 10, true))
	if err := b.control("tcp4", "192.0.2.1:22", fakeRawConn{6}); err != nil {
		t.Fatal(err)
	}
	if got, want := so.take(), "fd 6 "+v4(8); got != want {
		t.Errorf("after the change: %s, want %s", got, want)
	}
	err = b.control("tcp6", "[2001:db8::1]:22", fakeRawConn{6})
	if err == nil || !strings.Contains(err.Error(), "no primary network interface for IPv6 (no default route ::/0") {
		t.Errorf("without an IPv6 default route: %v", err)
	}
	if so.take() != "" {
		t.Error("a socket was bound without a primary interface")
	}
	var logged []string
	for _, e := range hook.AllEntries() {
		logged = append(logged, e.Level.String()+": "+e.Message)
	}
	want := []string{
		"info: bypass: the primary interface changed: shunt's own IPv4 connections leave through eth8 (index 8, metric 0+10), no longer eth3 (index 3, metric 0+25)",
		"warning: bypass: no IPv6 default route: shunt's own IPv6 connections (SSH servers, direct flows) fail until there is one",
	}
	if strings.Join(logged, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(logged, "\n"), strings.Join(want, "\n"))
	}
	// Another change of nothing that matters logs nothing.
	hook.Reset()
	ip.setDefaults(defRoute("0.0.0.0/0", 3, 0, 25, true), defRoute("0.0.0.0/0", 8, 0, 10, true))
	if n := len(hook.AllEntries()); n != 0 {
		t.Errorf("%d lines logged for no change", n)
	}

	if err := b.close(); err != nil {
		t.Fatal(err)
	}
	if n := len(ip.watchers); n != 0 {
		t.Errorf("%d route watchers left after close", n)
	}
	if err := b.close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// Failures say which call failed.
func TestWinBypassErrors(t *testing.T) {
	ip := newFakeIPHelper()
	ip.fail["DefaultRoutes"] = errors.New("boom")
	if _, err := newWinBypass(ip, (&sockopts{}).set, winQuiet()); err == nil || !strings.Contains(err.Error(), "GetIpForwardTable2") {
		t.Errorf("routes unreadable: %v", err)
	}
	ip = newFakeIPHelper()
	ip.fail["WatchRoutes"] = errors.New("boom")
	if _, err := newWinBypass(ip, (&sockopts{}).set, winQuiet()); err == nil || !strings.Contains(err.Error(), "NotifyRouteChange2") {
		t.Errorf("no watch: %v", err)
	}
	ip = newFakeIPHelper()
	ip.defaults = []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true)}
	so := &sockopts{err: errors.New("An invalid argument was supplied.")}
	b, err := newWinBypass(ip, so.set, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	if err := b.control("tcp4", "192.0.2.1:22", fakeRawConn{5}); err == nil || !strings.Contains(err.Error(), "binding the socket to eth3 (index 3, metric 0+25) (setsockopt IP_UNICAST_IF): An invalid argument") {
		t.Errorf("setsockopt failing: %v", err)
	}
	// A failed read of the routes keeps the primary interface.
	ip.fail["DefaultRoutes"] = errors.New("boom")
	ip.setDefaults()
	so.err = nil
	if err := b.control("tcp4", "192.0.2.1:22", fakeRawConn{5}); err != nil {
		t.Errorf("after a failed read: %v", err)
	}
}

// A Bypass made of it sets the option on each socket it dials, before
// the connect: a failing setsockopt fails the dial, and no packet leaves.
func TestWinBypassDials(t *testing.T) {
	ip := newFakeIPHelper()
	ip.defaults = []winRoute{defRoute("0.0.0.0/0", 3, 0, 25, true)}
	so := &sockopts{err: errors.New("made-up failure")}
	wb, err := newWinBypass(ip, so.set, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	b := newBypass(wb, nil)
	defer b.Close()
	_, err = b.DialContext(context.Background(), "tcp", "192.0.2.1:9")
	if err == nil || !strings.Contains(err.Error(), "setsockopt IP_UNICAST_IF): made-up failure") {
		t.Errorf("dial: %v", err)
	}
	_, _, v := unicastIfOption(false, 3)
	if got := so.take(); !strings.HasSuffix(got, fmt.Sprintf("level 0 option 31 value %#x", uint32(v))) {
		t.Errorf("setsockopt calls %q", got)
	}
}
