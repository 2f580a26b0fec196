package platform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestChoosePrimary(t *testing.T) {
	def4, def6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	gw := rtfUp | rtfGateway
	for _, tc := range []struct {
		name   string
		routes []ribRoute
		v4, v6 int
	}{
		{"none", nil, 0, 0},
		{"wifi", []ribRoute{
			{netip.MustParsePrefix("192.168.1.0/24"), rtfUp, 4},
			{def4, gw, 4},
			{def6, gw, 4},
		}, 4, 4},
		{"scoped defaults of other services are not primary", []ribRoute{
			{def4, gw | rtfIfscope, 5},
			{def4, gw, 4},
			{def4, gw | rtfIfscope, 4},
		}, 4, 0},
		{"the first unscoped default wins", []ribRoute{
			{def4, gw, 7},
			{def4, gw, 4},
		}, 7, 0},
		{"a default without a gateway (a VPN's utun) is not primary", []ribRoute{
			{def4, rtfUp, 9},
			{def6, rtfUp, 9},
			{def6, gw, 4},
		}, 0, 4},
		{"down, reject, blackhole, host routes and no interface are skipped", []ribRoute{
			{def4, rtfGateway, 1},
			{def4, gw | rtfReject, 2},
			{def4, gw | rtfBlackhole, 3},
			{def4, gw | rtfHost, 4},
			{def4, gw, 0},
			{netip.Prefix{}, gw, 6},
			{netip.MustParsePrefix("0.0.0.0/1"), gw, 7},
			{def4, gw, 8},
		}, 8, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := choosePrimary(tc.routes, false); got != tc.v4 {
				t.Errorf("IPv4: %d, want %d", got, tc.v4)
			}
			if got := choosePrimary(tc.routes, true); got != tc.v6 {
				t.Errorf("IPv6: %d, want %d", got, tc.v6)
			}
		})
	}
}

func TestRIBPrefix(t *testing.T) {
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")
	for _, tc := range []struct {
		dst  netip.Addr
		mask []byte
		host bool
		want string
	}{
		{netip.IPv4Unspecified(), nil, false, "0.0.0.0/0"},
		{netip.IPv6Unspecified(), nil, false, "::/0"},
		{a4, []byte{255, 0, 0, 0}, false, "10.0.0.0/8"},
		{a4, []byte{255, 255, 240}, false, "10.1.0.0/20"},
		{a4, []byte{255, 255, 255, 255}, false, "10.1.2.3/32"},
		{a4, nil, true, "10.1.2.3/32"},
		{a6, []byte{0xff, 0xff, 0xff, 0xff}, false, "2001:db8::/32"},
		{a6, nil, true, "2001:db8::1/128"},
		{a4, []byte{255, 255, 255, 255, 255, 255}, false, "10.1.2.3/32"}, // longer than the address
	} {
		if got := ribPrefix(tc.dst, tc.mask, tc.host).String(); got != tc.want {
			t.Errorf("ribPrefix(%v, %v, %v) = %s, want %s", tc.dst, tc.mask, tc.host, got, tc.want)
		}
	}
}

// fakeRawConn runs Control's function on a made-up descriptor.
type fakeRawConn struct{ fd uintptr }

func (c fakeRawConn) Control(f func(fd uintptr)) error { f(c.fd); return nil }
func (fakeRawConn) Read(func(uintptr) bool) error      { return nil }
func (fakeRawConn) Write(func(uintptr) bool) error     { return nil }

// bound is one call of boundIfBypass.bind.
type bound struct {
	fd    uintptr
	v6    bool
	index int
}

func newTestBoundIf(fail error) (*boundIfBypass, *[]bound) {
	var calls []bound
	log, _ := hookedLog()
	b := &boundIfBypass{log: log, bind: func(fd uintptr, v6 bool, index int) error {
		calls = append(calls, bound{fd, v6, index})
		return fail
	}}
	return b, &calls
}

func TestBoundIfControl(t *testing.T) {
	b, calls := newTestBoundIf(nil)
	b.setPrimary(primaryIf{4, "en0"}, primaryIf{5, "en1"})
	for _, tc := range []struct {
		network, addr string
		want          []bound
	}{
		{"tcp4", "192.0.2.1:22", []bound{{3, false, 4}}},
		{"udp4", "192.0.2.1:53", []bound{{3, false, 4}}},
		{"tcp6", "[2001:db8::1]:22", []bound{{3, true, 5}}},
		{"udp6", "[2001:db8::1]:53", []bound{{3, true, 5}}},
		{"tcp4", "127.0.0.1:1080", nil}, // loopback is left alone
		{"tcp6", "[::1]:1080", nil},
		{"tcp4", "host.example:22", []bound{{3, false, 4}}},
	} {
		*calls = nil
		if err := b.control(tc.network, tc.addr, fakeRawConn{3}); err != nil {
			t.Errorf("%s %s: %v", tc.network, tc.addr, err)
		}
		if fmt.Sprint(*calls) != fmt.Sprint(tc.want) {
			t.Errorf("%s %s: bound %v, want %v", tc.network, tc.addr, *calls, tc.want)
		}
	}
	if err := b.control("unix", "/tmp/x", fakeRawConn{3}); err == nil || !strings.Contains(err.Error(), `"unix"`) {
		t.Errorf("unix socket: %v", err)
	}

	// A change applies to the next socket.
	b.setPrimary(primaryIf{6, "en2"}, primaryIf{})
	*calls = nil
	if err := b.control("tcp4", "192.0.2.1:22", fakeRawConn{7}); err != nil || fmt.Sprint(*calls) != fmt.Sprint([]bound{{7, false, 6}}) {
		t.Errorf("after the change: %v, bound %v", err, *calls)
	}
	err := b.control("tcp6", "[2001:db8::1]:22", fakeRawConn{7})
	if !errors.Is(err, ErrNoPrimaryInterface) || !strings.Contains(err.Error(), "not connected?") || !strings.Contains(err.Error(), "IPv6") {
		t.Errorf("IPv6 without a default route: %v", err)
	}

	failing, _ := newTestBoundIf(syscall.EADDRNOTAVAIL)
	failing.setPrimary(primaryIf{4, "en0"}, primaryIf{})
	if err := failing.control("tcp4", "192.0.2.1:22", fakeRawConn{3}); !errors.Is(err, syscall.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "primary interface") {
		t.Errorf("failing bind: %v", err)
	}
}

// TestBoundIfBypassDials dials through the Bypass: loopback connects
// unbound, and without a primary interface other addresses fail before
// any packet is sent.
func TestBoundIfBypassDials(t *testing.T) {
	b, calls := newTestBoundIf(nil)
	bp := newBypass(b, nil)
	defer bp.Close()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := bp.DialContext(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(*calls) != 0 {
		t.Errorf("loopback was bound: %v", *calls)
	}
	_, err = bp.DialContext(context.Background(), "tcp", "192.0.2.1:22")
	if !errors.Is(err, ErrNoPrimaryInterface) {
		t.Errorf("dial without a primary interface: %v", err)
	}
}

func TestBoundIfLogsChanges(t *testing.T) {
	log, hook := hookedLog()
	b := &boundIfBypass{log: log}
	b.setPrimary(primaryIf{4, "en0"}, primaryIf{})
	b.setPrimary(primaryIf{4, "en0"}, primaryIf{})
	b.setPrimary(primaryIf{5, "en7"}, primaryIf{5, "en7"})
	b.setPrimary(primaryIf{}, primaryIf{5, "en7"})
	var got []string
	for _, e := range hook.AllEntries() {
		got = append(got, e.Message)
	}
	want := []string{
		"bypass: shunt's own connections leave by the primary network interface",
		"bypass: the primary network interface for IPv4 changed: en0 → en7",
		"bypass: the primary network interface for IPv6 changed: none → en7",
		"bypass: the primary network interface for IPv4 changed: en7 → none",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if f := hook.AllEntries()[0].Data; f["ipv4"] != "en0" || f["ipv6"] != "none" {
		t.Errorf("first line's fields: %v", f)
	}
}

// routeMsg is a routing message of type typ, n bytes long.
func routeMsg(typ byte, n int) []byte {
	b := make([]byte, n)
	binary.LittleEndian.PutUint16(b, uint16(n))
	b[2], b[3] = 5, typ
	return b
}

func TestRouteMsgTypes(t *testing.T) {
	buf := append(append(routeMsg(rtmAdd, 92), routeMsg(rtmIfInfo, 112)...), routeMsg(rtmDelete, 40)[:10]...)
	if got := fmt.Sprint(routeMsgTypes(buf)); got != "[1 14]" {
		t.Errorf("types %s", got)
	}
	for _, b := range [][]byte{nil, {1}, {0, 0, 5, 1}, {3, 0, 5, 1}} {
		if got := routeMsgTypes(b); len(got) != 0 {
			t.Errorf("%v: types %v", b, got)
		}
	}
}

func FuzzRouteMsgTypes(f *testing.F) {
	f.Add(routeMsg(rtmAdd, 92))
	f.Add(append(routeMsg(rtmNewAddr, 20), routeMsg(rtmChange, 4)...))
	f.Add([]byte{0xff, 0xff, 5, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if got := routeMsgTypes(b); len(got) > len(b)/4 {
			t.Fatalf("%d messages in %d bytes", len(got), len(b))
		}
	})
}

// scriptedReads returns a read function that hands out the steps in
// order: a message, or an error.
func scriptedReads(steps ...any) func([]byte) (int, error) {
	return func(buf []byte) (int, error) {
		if len(steps) == 0 {
			return 0, os.ErrClosed
		}
		s := steps[0]
		steps = steps[1:]
		if err, ok := s.(error); ok {
			return 0, err
		}
		return copy(buf, s.([]byte)), nil
	}
}

func TestFollowRoutes(t *testing.T) {
	const rtmGet, rtmMiss = 0x4, 0x7
	for _, tc := range []struct {
		name  string
		steps []any
		want  int
		warn  bool
	}{
		{"unrelated messages", []any{routeMsg(rtmGet, 92), routeMsg(rtmMiss, 92)}, 0, false},
		{"a route added", []any{routeMsg(rtmGet, 92), routeMsg(rtmAdd, 92)}, 1, false},
		{"an address", []any{routeMsg(rtmNewAddr, 40)}, 1, false},
		{"overflow", []any{syscall.ENOBUFS}, 1, false},
		{"a read error", []any{routeMsg(rtmIfInfo, 112), errors.New("bad file descriptor")}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, hook := hookedLog()
			n := 0
			// followRoutes returns after the last refresh: n needs no lock
			// once it has.
			followRoutes(scriptedReads(tc.steps...), func() { n++ }, log, "the test's routes are")
			// Changes may be gathered into one refresh, never lost.
			if tc.want == 0 && n != 0 || tc.want > 0 && n == 0 {
				t.Errorf("%d refreshes, want %d", n, tc.want)
			}
			warned := hook.LastEntry() != nil && hook.LastEntry().Level == logrus.WarnLevel
			if warned != tc.warn {
				t.Errorf("warned %v, want %v", warned, tc.warn)
			}
		})
	}
}
