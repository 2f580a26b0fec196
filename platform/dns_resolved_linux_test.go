package platform

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/internal/testns"
)

// busConfig is a dbus-daemon configuration that lets anyone own any name
// and call anything: a bus for one test, on a socket in its temp dir.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// privateBus starts a dbus-daemon of the test's own and returns its
// address; it stops when the test ends.
func privateBus(t *testing.T) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	lack := ""
	if err != nil {
		lack = "needs dbus-daemon (Debian package dbus-daemon) for a private D-Bus bus"
	}
	testns.Need(t, lack)
	dir, err := os.MkdirTemp("", "shunt-bus-") // short: a socket path has 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Services that drop their privileges (resolved) connect too.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, filepath.Join(dir, "bus")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("dbus-daemon: %s", stderr.String())
		}
	})
	// The daemon prints its address once it listens.
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(addr)
}

func busDialer(addr string) func() (*dbus.Conn, error) {
	return func() (*dbus.Conn, error) { return dbus.Connect(addr) }
}

// fakeResolved is org.freedesktop.resolve1.Manager as far as shunt uses
// it: it records the calls, and fails those named in fail.
type fakeResolved struct {
	mu      sync.Mutex
	calls   []string
	fail    map[string]*dbus.Error
	flushed chan struct{} // a token for each FlushCaches, the last call of a Set
}

func (f *fakeResolved) record(method string, args ...any) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := method
	for _, a := range args {
		s += fmt.Sprintf(" %v", a)
	}
	f.calls = append(f.calls, s)
	if e, ok := f.fail[method]; ok {
		return e
	}
	return nil
}

// setFail makes method fail with e, or succeed again with nil.
func (f *fakeResolved) setFail(method string, e *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e == nil {
		delete(f.fail, method)
	} else {
		f.fail[method] = e
	}
}

func (f *fakeResolved) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeResolved) SetLinkDNS(i int32, addrs []linkAddr) *dbus.Error {
	var s []string
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.Address)
		s = append(s, fmt.Sprintf("%d/%v", a.Family, ip))
	}
	return f.record("SetLinkDNS", i, s)
}

func (f *fakeResolved) SetLinkDomains(i int32, d []linkDomain) *dbus.Error {
	return f.record("SetLinkDomains", i, d)
}
func (f *fakeResolved) SetLinkDefaultRoute(i int32, b bool) *dbus.Error {
	return f.record("SetLinkDefaultRoute", i, b)
}
func (f *fakeResolved) SetLinkLLMNR(i int32, s string) *dbus.Error {
	return f.record("SetLinkLLMNR", i, s)
}
func (f *fakeResolved) SetLinkMulticastDNS(i int32, s string) *dbus.Error {
	return f.record("SetLinkMulticastDNS", i, s)
}
func (f *fakeResolved) SetLinkDNSSEC(i int32, s string) *dbus.Error {
	return f.record("SetLinkDNSSEC", i, s)
}
func (f *fakeResolved) SetLinkDNSOverTLS(i int32, s string) *dbus.Error {
	return f.record("SetLinkDNSOverTLS", i, s)
}
func (f *fakeResolved) RevertLink(i int32) *dbus.Error { return f.record("RevertLink", i) }
func (f *fakeResolved) FlushCaches() *dbus.Error {
	defer func() {
		select {
		case f.flushed <- struct{}{}:
		default:
		}
	}()
	return f.record("FlushCaches")
}
func (f *fakeResolved) GetLink(i int32) (dbus.ObjectPath, *dbus.Error) {
	return dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/resolve1/link/_3%d", i)), nil
}

// resolvedState is what the fake's properties say.
type resolvedState struct {
	dnsEx, fallbackEx []resolvedServer
	noEx              bool           // an older resolved: DNS and FallbackDNS only
	defaultRoute      map[int32]bool // of the links that have servers
}

// startFakeResolved exports a fakeResolved with st's properties on a
// private bus and returns it and the bus's address.
func startFakeResolved(t *testing.T, st resolvedState) (*fakeResolved, string) {
	t.Helper()
	addr := privateBus(t)
	f, _ := exportFakeResolved(t, addr, st)
	return f, addr
}

// exportFakeResolved puts a fakeResolved on the bus at addr, on a
// connection of its own, which it returns.
func exportFakeResolved(t *testing.T, addr string, st resolvedState) (*fakeResolved, *dbus.Conn) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeResolved{fail: map[string]*dbus.Error{}, flushed: make(chan struct{}, 16)}
	if err := conn.Export(f, resolvedPath, resolvedManager); err != nil {
		t.Fatal(err)
	}
	old := func(ss []resolvedServer) []linkServerOld {
		out := []linkServerOld{}
		for _, s := range ss {
			out = append(out, linkServerOld{s.Ifindex, s.Family, s.Address})
		}
		return out
	}
	props := map[string]*prop.Prop{
		"DNS":         {Value: old(st.dnsEx)},
		"FallbackDNS": {Value: old(st.fallbackEx)},
	}
	if !st.noEx {
		props["DNSEx"] = &prop.Prop{Value: append([]resolvedServer{}, st.dnsEx...)}
		props["FallbackDNSEx"] = &prop.Prop{Value: append([]resolvedServer{}, st.fallbackEx...)}
	}
	if _, err := prop.Export(conn, resolvedPath, prop.Map{resolvedManager: props}); err != nil {
		t.Fatal(err)
	}
	for i, dr := range st.defaultRoute {
		path := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/resolve1/link/_3%d", i))
		if _, err := prop.Export(conn, path, prop.Map{resolvedLink: {"DefaultRoute": {Value: dr}}}); err != nil {
			t.Fatal(err)
		}
	}
	if reply, err := conn.RequestName(resolvedBusName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v, %v", resolvedBusName, reply, err)
	}
	return f, conn
}

type linkServerOld struct {
	Ifindex int32
	Family  int32
	Address []byte
}

func srv(ifindex int32, addr string, port uint16) resolvedServer {
	a := netip.MustParseAddr(addr)
	fam := int32(2)
	if a.Is6() {
		fam = 10
	}
	return resolvedServer{Ifindex: ifindex, Family: fam, Address: a.AsSlice(), Port: port}
}

func loIndex(t *testing.T) int32 {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	return int32(lo.Index)
}

func TestResolvedSetAndClose(t *testing.T) {
	lo := loIndex(t)
	f, addr := startFakeResolved(t, resolvedState{
		dnsEx: []resolvedServer{
			srv(lo, "fe80::1", 0),      // a link-local server gets its zone
			srv(7, "203.0.113.7", 0),   // a link that is no default route
			srv(0, "192.0.2.1", 0),     // global servers come first
			srv(0, "192.0.2.2", 5353),  // with their port
			srv(8, "169.254.83.53", 0), // shunt's own: never
			srv(0, "192.0.2.1", 0),     // once only
			srv(8, "2001:db8::8", 0),   // a default-route link's
			srv(9, "198.51.100.9", 0),  // a link resolved cannot describe
		},
		defaultRoute: map[int32]bool{lo: true, 7: false, 8: true},
	})
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	writeFile(t, rc, "nameserver 127.0.0.53\noptions edns0 trust-ad\n", 0o644)
	before := fileState(t, rc)
	d, err := NewOSDNS(DNSOptions{StateDir: t.TempDir(), ResolvConf: rc, Bus: busDialer(addr), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if d.Mode() != DNSModeResolved {
		t.Fatalf("auto chose %q over 127.0.0.53 with resolved on the bus", d.Mode())
	}
	want := []string{"192.0.2.1:53", "192.0.2.2:5353", "[fe80::1%lo]:53", "[2001:db8::8]:53", "198.51.100.9:53"}
	if got := apStrings(d.Upstreams()); !slices.Equal(got, want) {
		t.Errorf("upstreams %v, want %v", got, want)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("NewOSDNS changed something: %v", calls)
	}
	cfg := DNSConfig{Nameservers: []netip.Addr{netlayout.DNS6, netlayout.DNS4}, Domains: []string{"Corp.Example.", "lab.example", "corp.example"}, Device: "lo"}
	if err := d.Set(cfg); err != nil {
		t.Fatal(err)
	}
	n := fmt.Sprint(lo)
	wantCalls := []string{
		"SetLinkDefaultRoute " + n + " false",
		"SetLinkLLMNR " + n + " no",
		"SetLinkMulticastDNS " + n + " no",
		"SetLinkDNSSEC " + n + " no",
		"SetLinkDNSOverTLS " + n + " no",
		"SetLinkDomains " + n + " [{corp.example true} {lab.example true}]",
		"SetLinkDNS " + n + " [2/169.254.83.53 10/fd53:6875:6e74::53]",
		"FlushCaches",
	}
	if got := f.takeCalls(); !slices.Equal(got, wantCalls) {
		t.Errorf("Set's calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	// Set reads the servers again, less those of shunt's own link.
	want = []string{"192.0.2.1:53", "192.0.2.2:5353", "[2001:db8::8]:53", "198.51.100.9:53"}
	if got := apStrings(d.Upstreams()); !slices.Equal(got, want) {
		t.Errorf("upstreams after Set %v, want %v", got, want)
	}
	// A reload with no domains: every name to shunt.
	cfg.Domains = nil
	if err := d.Set(cfg); err != nil {
		t.Fatal(err)
	}
	got := f.takeCalls()
	if !slices.Contains(got, "SetLinkDefaultRoute "+n+" true") || !slices.Contains(got, "SetLinkDomains "+n+" [{. true}]") || slices.Contains(got, "RevertLink "+n) {
		t.Errorf("Set without domains: %v", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.takeCalls(); !slices.Equal(got, []string{"RevertLink " + n}) {
		t.Errorf("Close's calls: %v", got)
	}
	if err := d.Close(); err != nil || len(f.takeCalls()) != 0 {
		t.Errorf("second Close: %v", err)
	}
	if fileState(t, rc) != before {
		t.Error("systemd-resolved mode changed resolv.conf")
	}
}

func apStrings(aps []netip.AddrPort) []string {
	var s []string
	for _, ap := range aps {
		s = append(s, ap.String())
	}
	return s
}

func TestResolvedUpstreamFallbacks(t *testing.T) {
	lo := loIndex(t)
	cfg := DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: []string{"corp.example"}, Device: "lo"}
	t.Run("FallbackDNS, an older resolved", func(t *testing.T) {
		_, addr := startFakeResolved(t, resolvedState{noEx: true, fallbackEx: []resolvedServer{srv(0, "192.0.2.9", 0)}})
		d, err := NewOSDNS(DNSOptions{Mode: DNSModeResolved, Bus: busDialer(addr), Log: quietLog(), ResolvConf: filepath.Join(t.TempDir(), "none")})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got := apStrings(d.Upstreams()); !slices.Equal(got, []string{"192.0.2.9:53"}) {
			t.Errorf("upstreams %v", got)
		}
	})
	t.Run("only the stub", func(t *testing.T) {
		f, addr := startFakeResolved(t, resolvedState{dnsEx: []resolvedServer{srv(lo, "169.254.83.53", 0)}, defaultRoute: map[int32]bool{lo: true}})
		d, err := NewOSDNS(DNSOptions{Mode: DNSModeResolved, Bus: busDialer(addr), Log: quietLog(), ResolvConf: filepath.Join(t.TempDir(), "none")})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if got := apStrings(d.Upstreams()); !slices.Equal(got, []string{"127.0.0.53:53"}) {
			t.Errorf("upstreams %v", got)
		}
		// With domains the stub is safe; with every name it would loop.
		if err := d.Set(cfg); err != nil {
			t.Fatal(err)
		}
		f.takeCalls()
		all := cfg
		all.Domains = nil
		if err := d.Set(all); err == nil || !strings.Contains(err.Error(), "back to itself") {
			t.Errorf("Set without domains over the stub alone: %v", err)
		}
		if got := f.takeCalls(); len(got) != 0 {
			t.Errorf("a refused Set made calls: %v", got)
		}
	})
}

func TestResolvedFailures(t *testing.T) {
	lo := loIndex(t)
	n := fmt.Sprint(lo)
	f, addr := startFakeResolved(t, resolvedState{dnsEx: []resolvedServer{srv(0, "192.0.2.1", 0)}})
	log, hook := test.NewNullLogger()
	d, err := NewOSDNS(DNSOptions{Mode: DNSModeResolved, Bus: busDialer(addr), Log: log, ResolvConf: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: []string{"corp.example"}, Device: "lo"}
	// An optional method an older resolved lacks: a warning.
	f.setFail("SetLinkDNSOverTLS", &dbus.Error{Name: "org.freedesktop.DBus.Error.UnknownMethod", Body: []any{"no such method"}})
	// A required one that fails: an error, and the link reverted.
	f.setFail("SetLinkDomains", &dbus.Error{Name: "org.freedesktop.DBus.Error.AccessDenied", Body: []any{"not allowed"}})
	err = d.Set(cfg)
	if err == nil || !strings.Contains(err.Error(), "SetLinkDomains") || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("Set with SetLinkDomains refused: %v", err)
	}
	if got := f.takeCalls(); got[len(got)-1] != "RevertLink "+n || slices.Contains(got, "SetLinkDNS "+n) {
		t.Errorf("calls of a failed Set: %v", got)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "SetLinkDNSOverTLS") {
		t.Errorf("no warning for the optional method: %v", hook.AllEntries())
	}
	f.setFail("SetLinkDomains", nil)
	if err := d.Set(cfg); err != nil {
		t.Fatal(err)
	}
	// The device went first: resolved has forgotten the link.
	f.setFail("RevertLink", &dbus.Error{Name: resolvedNoSuchLink, Body: []any{"Link " + n + " not known"}})
	if err := d.Close(); err != nil {
		t.Errorf("Close after the link went: %v", err)
	}
	// No such device.
	_, addr = startFakeResolved(t, resolvedState{dnsEx: []resolvedServer{srv(0, "192.0.2.1", 0)}})
	d, err = NewOSDNS(DNSOptions{Mode: DNSModeResolved, Bus: busDialer(addr), Log: quietLog(), ResolvConf: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg.Device = "shunt-nonexistent"
	if err := d.Set(cfg); err == nil || !strings.Contains(err.Error(), "shunt-nonexistent") {
		t.Errorf("Set on a missing device: %v", err)
	}
}

func TestAutoChoosesResolved(t *testing.T) {
	_, addr := startFakeResolved(t, resolvedState{dnsEx: []resolvedServer{srv(0, "192.0.2.1", 0)}})
	emptyBus := privateBus(t)
	for _, tc := range []struct {
		name, link, content string
		bus                 string
		want                string // mode, or a word of the error
	}{
		{"stub link", "/run/systemd/resolve/stub-resolv.conf", "", addr, DNSModeResolved},
		{"resolved's own link", "/run/systemd/resolve/resolv.conf", "", addr, DNSModeResolved},
		{"127.0.0.53 in a file", "", "nameserver 127.0.0.53\n", addr, DNSModeResolved},
		{"another server", "", "nameserver 192.0.2.3\n", addr, DNSModeFile},
		{"stub link, resolved not running", "/run/systemd/resolve/stub-resolv.conf", "", emptyBus, "does not answer"},
		{"127.0.0.53, resolved not running", "", "nameserver 127.0.0.53\n", emptyBus, DNSModeFile},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, rc := dnsDirs(t)
			if tc.link != "" {
				os.MkdirAll(filepath.Dir(rc), 0o755)
				os.Symlink(tc.link, rc)
			} else {
				writeFile(t, rc, tc.content, 0o644)
			}
			d, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Bus: busDialer(tc.bus), Log: quietLog()})
			switch {
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %v, want %q", err, tc.want)
			case err == nil && d.Mode() != tc.want:
				t.Errorf("mode %s, want %s", d.Mode(), tc.want)
			}
			if err == nil {
				d.Close()
			}
		})
	}
}

// TestResolvedRestart: resolved forgets link settings when it restarts;
// shunt sees the bus name change hands and applies them again.
func TestResolvedRestart(t *testing.T) {
	lo := loIndex(t)
	st := resolvedState{dnsEx: []resolvedServer{srv(0, "192.0.2.1", 0)}}
	addr := privateBus(t)
	first, firstConn := exportFakeResolved(t, addr, st)
	d, err := NewOSDNS(DNSOptions{Mode: DNSModeResolved, Bus: busDialer(addr), Log: quietLog(), ResolvConf: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: []string{"corp.example"}, Device: "lo"}
	if err := d.Set(cfg); err != nil {
		t.Fatal(err)
	}
	setCalls := first.takeCalls()
	<-first.flushed
	firstConn.Close() // resolved stops: its name is free
	second, _ := exportFakeResolved(t, addr, st)
	// A bound for a broken watch, generous: it never decides a pass.
	select {
	case <-second.flushed:
	case <-time.After(time.Minute):
		t.Fatal("shunt did not configure the restarted resolved in a minute")
	}
	if got := second.takeCalls(); !slices.Equal(got, setCalls) {
		t.Errorf("calls to the restarted resolved:\n%s\nwant Set's:\n%s", strings.Join(got, "\n"), strings.Join(setCalls, "\n"))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := second.takeCalls(); !slices.Equal(got, []string{fmt.Sprintf("RevertLink %d", lo)}) {
		t.Errorf("Close's calls: %v", got)
	}
}
