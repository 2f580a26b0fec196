package platform

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// fakeIPHelper is Windows' IP Helper API as a table: it records each call
// as a line of text, keeps the addresses and routes, and fails the calls
// named in fail.
type fakeIPHelper struct {
	mu       sync.Mutex
	calls    []string
	adapters map[string]uint64
	addrs    map[string][]netip.Prefix // "luid family"
	metrics  map[string]uint32
	routes   map[string]bool // "luid dst"
	defaults []winRoute
	fail     map[string]error // by method name
	watchers map[int]func()
	nextW    int
}

func newFakeIPHelper() *fakeIPHelper {
	return &fakeIPHelper{
		adapters: map[string]uint64{"shunt0": 7},
		addrs:    map[string][]netip.Prefix{},
		metrics:  map[string]uint32{},
		routes:   map[string]bool{},
		fail:     map[string]error{},
		watchers: map[int]func(){},
	}
}

func (f *fakeIPHelper) record(method, format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, method+" "+fmt.Sprintf(format, args...))
	return f.fail[method]
}

// takeCalls returns the calls since the last take.
func (f *fakeIPHelper) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeIPHelper) LUIDByAlias(alias string) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["LUIDByAlias"]; err != nil {
		return 0, err
	}
	if l, ok := f.adapters[alias]; ok {
		return l, nil
	}
	return 0, errNoAdapter
}

func (f *fakeIPHelper) SetAddresses(luid uint64, v6 bool, addrs []netip.Prefix) error {
	if err := f.record("SetAddresses", "%d %s %s", luid, familyName(v6), prefixList(addrs)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[fmt.Sprint(luid, " ", familyName(v6))] = addrs
	return nil
}

func (f *fakeIPHelper) SetInterface(luid uint64, v6 bool, metric, mtu uint32) error {
	if err := f.record("SetInterface", "%d %s metric %d mtu %d", luid, familyName(v6), metric, mtu); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metrics[fmt.Sprint(luid, " ", familyName(v6))] = metric
	return nil
}

func (f *fakeIPHelper) AddRoute(luid uint64, dst netip.Prefix, metric uint32) error {
	if err := f.record("AddRoute", "%d %v metric %d", luid, dst, metric); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[fmt.Sprint(luid, " ", dst)] = true
	return nil
}

func (f *fakeIPHelper) DeleteRoute(luid uint64, dst netip.Prefix) error {
	if err := f.record("DeleteRoute", "%d %v", luid, dst); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.routes, fmt.Sprint(luid, " ", dst))
	return nil
}

func (f *fakeIPHelper) DefaultRoutes() ([]winRoute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["DefaultRoutes"]; err != nil {
		return nil, err
	}
	return slices.Clone(f.defaults), nil
}

func (f *fakeIPHelper) WatchRoutes(changed func()) (func() error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail["WatchRoutes"]; err != nil {
		return nil, err
	}
	id := f.nextW
	f.nextW++
	f.watchers[id] = changed
	return func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.watchers, id)
		return nil
	}, nil
}

// setDefaults replaces the default routes and tells the watchers, as
// NotifyRouteChange2 would.
func (f *fakeIPHelper) setDefaults(routes ...winRoute) {
	f.mu.Lock()
	f.defaults = routes
	var ws []func()
	for _, w := range f.watchers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	for _, w := range ws {
		w()
	}
}

// routeTable is the routes as sorted text.
func (f *fakeIPHelper) routeTable() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var rs []string
	for r := range f.routes {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return strings.Join(rs, "\n")
}

func pfx(ss ...string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func winConfig(routes ...string) Config {
	return Config{Device: "shunt0", Routes: pfx(routes...)}
}

// OpenCapture's calls: the addresses and metric per family, then the
// routes, a default route split in halves.
func TestWinOpenCaptureCalls(t *testing.T) {
	ip := newFakeIPHelper()
	c, err := openWinCapture(ip, winConfig("10.0.0.0/8", "0.0.0.0/0", "fd00::/8", "::/0"), 1400, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	want := `SetAddresses 7 IPv4 169.254.83.1/32
SetInterface 7 IPv4 metric 0 mtu 1400
SetAddresses 7 IPv6 fd53:6875:6e74::1/128
SetInterface 7 IPv6 metric 0 mtu 1400
AddRoute 7 0.0.0.0/1 metric 0
AddRoute 7 10.0.0.0/8 metric 0
AddRoute 7 128.0.0.0/1 metric 0
AddRoute 7 ::/1 metric 0
AddRoute 7 8000::/1 metric 0
AddRoute 7 fd00::/8 metric 0`
	if got := strings.Join(ip.takeCalls(), "\n"); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want = `DeleteRoute 7 0.0.0.0/1
DeleteRoute 7 10.0.0.0/8
DeleteRoute 7 128.0.0.0/1
DeleteRoute 7 ::/1
DeleteRoute 7 8000::/1
DeleteRoute 7 fd00::/8`
	if got := strings.Join(ip.takeCalls(), "\n"); got != want {
		t.Errorf("Close's calls:\n%s\nwant:\n%s", got, want)
	}
	if err := c.Close(); err != nil || len(ip.takeCalls()) != 0 {
		t.Errorf("a second Close: %v, calls %q; want nothing done", err, ip.takeCalls())
	}
	if err := c.SetRoutes(pfx("10.0.0.0/8")); err == nil {
		t.Error("SetRoutes after Close succeeded")
	}
}

// Each config, whatever came before it, leaves exactly its routes: the
// configs are applied in random order (as Tailscale's router tests do).
func TestWinSetRoutesRandomOrder(t *testing.T) {
	configs := []struct {
		name   string
		routes []string
		want   string
	}{
		{"none", nil, ""},
		{"one", []string{"10.1.0.0/16"}, "7 10.1.0.0/16"},
		{"unmasked and duplicated", []string{"10.1.2.3/16", "10.1.0.0/16", "::ffff:10.2.0.0/112"}, "7 10.1.0.0/16\n7 10.2.0.0/16"},
		{"default", []string{"0.0.0.0/0", "10.1.0.0/16"}, "7 0.0.0.0/1\n7 10.1.0.0/16\n7 128.0.0.0/1"},
		{"both defaults", []string{"0.0.0.0/0", "::/0"}, "7 0.0.0.0/1\n7 128.0.0.0/1\n7 8000::/1\n7 ::/1"},
		{"halves and default", []string{"0.0.0.0/1", "0.0.0.0/0"}, "7 0.0.0.0/1\n7 128.0.0.0/1"},
		{"v6", []string{"2001:db8::/32", "fd00::1/8"}, "7 2001:db8::/32\n7 fd00::/8"},
	}
	ip := newFakeIPHelper()
	c, err := openWinCapture(ip, winConfig(), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		cfg := configs[r.IntN(len(configs))]
		if err := c.SetRoutes(pfx(cfg.routes...)); err != nil {
			t.Fatalf("%s: %v", cfg.name, err)
		}
		if got := ip.routeTable(); got != cfg.want {
			t.Fatalf("after %s: routes\n%s\nwant\n%s", cfg.name, got, cfg.want)
		}
	}
}

// SetRoutes changes only the difference, adding before it removes: a
// destination kept across a reload is never unrouted.
func TestWinSetRoutesByDifference(t *testing.T) {
	ip := newFakeIPHelper()
	c, err := openWinCapture(ip, winConfig("10.1.0.0/24", "10.2.0.0/24", "0.0.0.0/0"), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ip.takeCalls()
	if err := c.SetRoutes(pfx("10.1.0.0/24", "10.3.0.0/24", "0.0.0.0/1", "128.0.0.0/1")); err != nil {
		t.Fatal(err)
	}
	want := "AddRoute 7 10.3.0.0/24 metric 0\nDeleteRoute 7 10.2.0.0/24"
	if got := strings.Join(ip.takeCalls(), "\n"); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if err := c.SetRoutes(pfx("0.0.0.0/0", "10.3.0.0/24", "10.1.0.0/24")); err != nil {
		t.Fatal(err)
	}
	if got := ip.takeCalls(); len(got) != 0 {
		t.Errorf("the same routes again: calls %q, want none", got)
	}
}

// Errors name the call and the destination; a route that failed is
// tried again by the next SetRoutes.
func TestWinCaptureErrors(t *testing.T) {
	ip := newFakeIPHelper()
	c, err := openWinCapture(ip, winConfig(), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ip.fail["AddRoute"] = errors.New("Access is denied.")
	err = c.SetRoutes(pfx("10.9.0.0/16"))
	if err == nil || !strings.Contains(err.Error(), "route 10.9.0.0/16 to shunt0 (CreateIpForwardEntry2): Access is denied.") {
		t.Errorf("SetRoutes: %v", err)
	}
	delete(ip.fail, "AddRoute")
	ip.takeCalls()
	if err := c.SetRoutes(pfx("10.9.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if got := ip.takeCalls(); !slices.Equal(got, []string{"AddRoute 7 10.9.0.0/16 metric 0"}) {
		t.Errorf("calls %q: want the route tried again", got)
	}
	ip.fail["DeleteRoute"] = errors.New("boom")
	if err := c.SetRoutes(nil); err == nil || !strings.Contains(err.Error(), "remove route 10.9.0.0/16 from shunt0 (DeleteIpForwardEntry2)") {
		t.Errorf("SetRoutes: %v", err)
	}

	if _, err := openWinCapture(newFakeIPHelper(), Config{Device: "nope"}, 0, winQuiet()); err == nil || !strings.Contains(err.Error(), `find the TUN adapter "nope" (GetAdaptersAddresses)`) {
		t.Errorf("unknown device: %v", err)
	}
	ip = newFakeIPHelper()
	ip.fail["SetAddresses"] = errors.New("The object already exists.")
	if _, err := openWinCapture(ip, winConfig("10.0.0.0/8"), 0, winQuiet()); err == nil || !strings.Contains(err.Error(), "addresses 169.254.83.1/32 on shunt0 (CreateUnicastIpAddressEntry)") {
		t.Errorf("address failure: %v", err)
	}
	if got := ip.routeTable(); got != "" {
		t.Errorf("routes left after a failed open: %s", got)
	}
}

// Without IPv6 on the TUN, IPv6 destinations are not captured, and IPv4
// still is.
func TestWinCaptureWithoutIPv6(t *testing.T) {
	ip := &failV6{newFakeIPHelper()}
	c, err := openWinCapture(ip, winConfig("10.0.0.0/8", "::/0"), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := ip.routeTable(); got != "7 10.0.0.0/8" {
		t.Errorf("routes %s, want only the IPv4 one", got)
	}
}

type failV6 struct{ *fakeIPHelper }

func (f *failV6) SetAddresses(luid uint64, v6 bool, addrs []netip.Prefix) error {
	if v6 {
		return errors.New("The request is not supported.")
	}
	return f.fakeIPHelper.SetAddresses(luid, v6, addrs)
}

// The kill switch is refused clearly, at Prepare already.
func TestWinKillSwitchRefused(t *testing.T) {
	ip := newFakeIPHelper()
	cfg := winConfig("10.0.0.0/8")
	cfg.KillSwitch = true
	if err := winPrepare(ip, cfg); !errors.Is(err, ErrKillSwitchWindows) {
		t.Errorf("Prepare: %v", err)
	}
	if _, err := openWinCapture(ip, cfg, 0, winQuiet()); !errors.Is(err, ErrKillSwitchWindows) {
		t.Errorf("OpenCapture: %v", err)
	}
	c, err := openWinCapture(ip, winConfig(), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetKillSwitch(true, nil); !errors.Is(err, ErrKillSwitchWindows) {
		t.Errorf("SetKillSwitch(true): %v", err)
	}
	if err := c.SetKillSwitch(false, nil); err != nil {
		t.Errorf("SetKillSwitch(false): %v", err)
	}
}

// Prepare refuses an adapter name in use.
func TestWinPrepare(t *testing.T) {
	ip := newFakeIPHelper()
	if err := winPrepare(ip, winConfig()); err == nil || !strings.Contains(err.Error(), "another shunt") {
		t.Errorf("name in use: %v", err)
	}
	if err := winPrepare(ip, Config{Device: "shunt1"}); err != nil {
		t.Errorf("free name: %v", err)
	}
	ip.fail["LUIDByAlias"] = errors.New("boom")
	if err := winPrepare(ip, Config{Device: "shunt1"}); err == nil || !strings.Contains(err.Error(), "(GetAdaptersAddresses): boom") {
		t.Errorf("adapters unreadable: %v", err)
	}
}

// A failure to set the IPv6 metric leaves IPv6 out, as a missing IPv6
// address does; the IPv4 one fails the open.
func TestWinCaptureInterfaceErrors(t *testing.T) {
	ip := &failV6Metric{newFakeIPHelper()}
	c, err := openWinCapture(ip, winConfig("10.0.0.0/8", "fd00::/8"), 0, winQuiet())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := ip.routeTable(); got != "7 10.0.0.0/8" {
		t.Errorf("routes %s, want only the IPv4 one", got)
	}
	f := newFakeIPHelper()
	f.fail["SetInterface"] = errors.New("The parameter is incorrect.")
	if _, err := openWinCapture(f, winConfig("10.0.0.0/8"), 0, winQuiet()); err == nil || !strings.Contains(err.Error(), "IPv4 metric and MTU of shunt0 (SetIpInterfaceEntry): The parameter is incorrect.") {
		t.Errorf("SetInterface failing: %v", err)
	}
}

type failV6Metric struct{ *fakeIPHelper }

func (f *failV6Metric) SetInterface(luid uint64, v6 bool, metric, mtu uint32) error {
	if v6 {
		return errors.New("Element not found.")
	}
	return f.fakeIPHelper.SetInterface(luid, v6, metric, mtu)
}

func winQuiet() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}
