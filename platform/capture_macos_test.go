package platform

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// fakeBSD records the commands a capture runs and keeps the routes they
// make, as macOS's route(8) and ifconfig(8) would: adding a route that is
// there fails ("File exists"), deleting one that is not fails ("not in
// table").
type fakeBSD struct {
	cmds   []string
	routes map[string]bool // "-inet 10.0.0.0/8 utun7"
	// fail makes a command that starts so fail, writing the value.
	fail map[string]string
}

func newFakeBSD() *fakeBSD { return &fakeBSD{routes: map[string]bool{}, fail: map[string]string{}} }

func (f *fakeBSD) run(args ...string) ([]byte, error) {
	line := strings.Join(args, " ")
	f.cmds = append(f.cmds, line)
	for prefix, out := range f.fail {
		if strings.HasPrefix(line, prefix) {
			return []byte(out), errors.New("exit status 1")
		}
	}
	if len(args) == 7 && args[0] == "route" && args[1] == "-n" && args[5] == "-interface" {
		key := args[3] + " " + args[4] + " " + args[6]
		switch args[2] {
		case "add":
			if f.routes[key] {
				return []byte("route: writing to routing socket: File exists\nadd net " + args[4] + ": gateway " + args[6] + ": File exists\n"), errors.New("exit status 1")
			}
			f.routes[key] = true
			return []byte("add net " + args[4] + ": gateway " + args[6] + "\n"), nil
		case "delete":
			if !f.routes[key] {
				return []byte("route: writing to routing socket: not in table\ndelete net " + args[4] + ": gateway " + args[6] + ": not in table\n"), errors.New("exit status 1")
			}
			delete(f.routes, key)
			return []byte("delete net " + args[4] + ": gateway " + args[6] + "\n"), nil
		}
	}
	return nil, nil
}

// take returns the commands run since the last take.
func (f *fakeBSD) take() string {
	s := strings.Join(f.cmds, "\n")
	f.cmds = nil
	return s
}

// table is the routes, sorted, as "-inet 10.0.0.0/8 utun7" lines.
func (f *fakeBSD) table() string {
	var out []string
	for k := range f.routes {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// hookedLog discards what it is told, and keeps it for the test.
func hookedLog() (logrus.FieldLogger, *test.Hook) {
	l, hook := test.NewNullLogger()
	return l, hook
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestUTUNCaptureOpen(t *testing.T) {
	f := newFakeBSD()
	log, _ := hookedLog()
	cfg := DefaultConfig("utun7", prefixes("10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32"))
	c, err := openUTUNCapture(cfg, f, log)
	if err != nil {
		t.Fatal(err)
	}
	want := `ifconfig utun7 inet 169.254.83.1 169.254.83.1 netmask 255.255.255.255
ifconfig utun7 inet6 fd53:6875:6e74::1 prefixlen 128
ifconfig utun7 up
route -n add -inet 10.0.0.0/8 -interface utun7
route -n add -inet 192.0.2.1/32 -interface utun7
route -n add -inet6 2001:db8::/32 -interface utun7`
	if got := f.take(); got != want {
		t.Errorf("commands:\n%s\nwant:\n%s", got, want)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want = `route -n delete -inet 10.0.0.0/8 -interface utun7
route -n delete -inet 192.0.2.1/32 -interface utun7
route -n delete -inet6 2001:db8::/32 -interface utun7`
	if got := f.take(); got != want {
		t.Errorf("Close ran:\n%s\nwant:\n%s", got, want)
	}
	if f.table() != "" {
		t.Errorf("routes left after Close:\n%s", f.table())
	}
	if err := c.Close(); err != nil || f.take() != "" {
		t.Errorf("second Close: %v, ran %q", err, f.cmds)
	}
	if err := c.SetRoutes(prefixes("10.0.0.0/8")); err == nil {
		t.Error("SetRoutes after Close succeeded")
	}
}

func TestUTUNCaptureSplitsDefaults(t *testing.T) {
	f := newFakeBSD()
	log, _ := hookedLog()
	c, err := openUTUNCapture(DefaultConfig("utun3", prefixes("0.0.0.0/0", "::/0", "0.0.0.0/1")), f, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := `-inet 0.0.0.0/1 utun3
-inet 128.0.0.0/1 utun3
-inet6 8000::/1 utun3
-inet6 ::/1 utun3`
	if got := f.table(); got != want {
		t.Errorf("routes:\n%s\nwant:\n%s", got, want)
	}
	// Dropping the default keeps the explicit 0.0.0.0/1.
	f.take()
	if err := c.SetRoutes(prefixes("0.0.0.0/1", "10.1.2.3/8")); err != nil {
		t.Fatal(err)
	}
	wantCmds := `route -n add -inet 10.0.0.0/8 -interface utun3
route -n delete -inet 128.0.0.0/1 -interface utun3
route -n delete -inet6 ::/1 -interface utun3
route -n delete -inet6 8000::/1 -interface utun3`
	if got := f.take(); got != wantCmds {
		t.Errorf("commands:\n%s\nwant:\n%s", got, wantCmds)
	}
}

// TestUTUNCaptureRandomOrder applies configurations in random orders and
// checks, after each, that the system's routes are exactly the
// configuration's, that adds come before deletes, and that no route kept
// was deleted.
func TestUTUNCaptureRandomOrder(t *testing.T) {
	configs := [][]string{
		{},
		{"10.0.0.0/8"},
		{"10.0.0.0/8", "172.16.0.0/12", "2001:db8::/32"},
		{"0.0.0.0/0"},
		{"0.0.0.0/0", "::/0", "198.18.0.0/15"},
		{"128.0.0.0/1", "10.0.0.0/8", "fd53:6875:6e74:fa6e::/64"},
		{"192.0.2.7/32", "192.0.2.8/32", "2001:db8::1/128"},
		{"::/1", "8000::/1"},
	}
	seed := uint64(18)
	for round := range 20 {
		rng := rand.New(rand.NewPCG(seed, uint64(round)))
		order := rng.Perm(len(configs))
		f := newFakeBSD()
		log, _ := hookedLog()
		c, err := openUTUNCapture(DefaultConfig("utun9", nil), f, log)
		if err != nil {
			t.Fatal(err)
		}
		f.take()
		prev := map[string]bool{}
		for _, i := range order {
			routes := prefixes(configs[i]...)
			if err := c.SetRoutes(routes); err != nil {
				t.Fatalf("round %d, config %v: %v", round, configs[i], err)
			}
			want := map[string]bool{}
			for _, p := range routes {
				for _, q := range splitDefault(p) {
					want[routeKey(q, "utun9")] = true
				}
			}
			var wantTable []string
			for k := range want {
				wantTable = append(wantTable, k)
			}
			slices.Sort(wantTable)
			if got := f.table(); got != strings.Join(wantTable, "\n") {
				t.Fatalf("round %d (order %v), after %v the routes are:\n%s\nwant:\n%s", round, order, configs[i], got, strings.Join(wantTable, "\n"))
			}
			deleting := false
			for _, line := range f.cmds {
				a := strings.Fields(line)
				key := a[3] + " " + a[4] + " " + a[6]
				switch a[2] {
				case "add":
					if deleting {
						t.Errorf("round %d: %q after a delete: adds must come first", round, line)
					}
					if prev[key] {
						t.Errorf("round %d: %q: the route was there already", round, line)
					}
				case "delete":
					deleting = true
					if want[key] {
						t.Errorf("round %d: %q deletes a route the configuration keeps", round, line)
					}
				}
			}
			f.take()
			prev = want
		}
		if err := c.Close(); err != nil || f.table() != "" {
			t.Fatalf("Close: %v, left:\n%s", err, f.table())
		}
	}
}

func routeKey(p netip.Prefix, dev string) string {
	fam := "-inet"
	if p.Addr().Is6() {
		fam = "-inet6"
	}
	return fam + " " + p.String() + " " + dev
}

func TestUTUNCaptureWithoutIPv6(t *testing.T) {
	f := newFakeBSD()
	f.fail["ifconfig utun2 inet6"] = "ifconfig: ioctl (SIOCAIFADDR): Operation not supported\n"
	log, hook := hookedLog()
	c, err := openUTUNCapture(DefaultConfig("utun2", prefixes("10.0.0.0/8", "2001:db8::/32", "::/0")), f, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := f.table(); got != "-inet 10.0.0.0/8 utun2" {
		t.Errorf("routes:\n%s", got)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "IPv6") {
		t.Errorf("no warning that IPv6 is unavailable: %v", e)
	}
}

func TestUTUNCaptureErrorsNameTheCommand(t *testing.T) {
	f := newFakeBSD()
	f.routes["-inet 10.0.0.0/8 utun4"] = true // a route to the destination exists
	log, _ := hookedLog()
	_, err := openUTUNCapture(DefaultConfig("utun4", prefixes("10.0.0.0/8", "9.0.0.0/8")), f, log)
	if err == nil {
		t.Fatal("open succeeded over an existing route")
	}
	for _, want := range []string{"route -n add -inet 10.0.0.0/8 -interface utun4", "File exists", "exit status 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// The route added before the failure is removed again.
	if got := f.table(); got != "-inet 10.0.0.0/8 utun4" {
		t.Errorf("after the failed open the routes are:\n%s", got)
	}

	f = newFakeBSD()
	f.fail["ifconfig utun4 up"] = "ifconfig: interface utun4 does not exist\n"
	_, err = openUTUNCapture(DefaultConfig("utun4", nil), f, log)
	if err == nil || !strings.Contains(err.Error(), "ifconfig utun4 up") || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("error %v", err)
	}
}

func TestUTUNCaptureCloseAfterDeviceGone(t *testing.T) {
	f := newFakeBSD()
	log, _ := hookedLog()
	c, err := openUTUNCapture(DefaultConfig("utun5", prefixes("10.0.0.0/8", "2001:db8::/32")), f, log)
	if err != nil {
		t.Fatal(err)
	}
	f.routes = map[string]bool{} // the device went, and its routes with it
	if err := c.Close(); err != nil {
		t.Errorf("Close after the device went: %v", err)
	}

	// route(8) may not know the device at all any more.
	f = newFakeBSD()
	c, err = openUTUNCapture(DefaultConfig("utun5", prefixes("10.0.0.0/8")), f, log)
	if err != nil {
		t.Fatal(err)
	}
	f.fail["route -n delete"] = "route: bad address: utun5\n"
	if err := c.Close(); err != nil {
		t.Errorf("Close after route(8) lost the device: %v", err)
	}

	// Another failure is reported, with route(8)'s words.
	f = newFakeBSD()
	c, err = openUTUNCapture(DefaultConfig("utun5", prefixes("10.0.0.0/8")), f, log)
	if err != nil {
		t.Fatal(err)
	}
	f.fail["route -n delete"] = "route: must be root to alter routing table\n"
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "must be root") || !strings.Contains(err.Error(), "route -n delete -inet 10.0.0.0/8 -interface utun5") {
		t.Errorf("Close that failed: %v", err)
	}
}

func TestUTUNCaptureKillSwitch(t *testing.T) {
	f := newFakeBSD()
	log, _ := hookedLog()
	cfg := DefaultConfig("utun6", prefixes("10.0.0.0/8"))
	cfg.KillSwitch = true
	if _, err := openUTUNCapture(cfg, f, log); !errors.Is(err, errKillSwitchMacOS) {
		t.Errorf("open with the kill switch: %v", err)
	}
	if len(f.cmds) != 0 {
		t.Errorf("ran %q before refusing", f.cmds)
	}
	if err := prepareUTUN(cfg, func(string) bool { return false }); !errors.Is(err, errKillSwitchMacOS) {
		t.Errorf("prepare with the kill switch: %v", err)
	}
	c, err := openUTUNCapture(DefaultConfig("utun6", nil), f, log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetKillSwitch(true, nil); !errors.Is(err, errKillSwitchMacOS) || !strings.Contains(err.Error(), "not supported on macOS yet") {
		t.Errorf("SetKillSwitch(true): %v", err)
	}
	if err := c.SetKillSwitch(false, nil); err != nil {
		t.Errorf("SetKillSwitch(false): %v", err)
	}
}

func TestPrepareUTUN(t *testing.T) {
	exists := func(name string) bool { return name == "utun3" }
	for _, tc := range []struct {
		dev  string
		fail bool
	}{
		{"utun3", true},
		{"utun4", false},
		{"utun", false}, // macOS picks the unit
		{"", false},
	} {
		err := prepareUTUN(DefaultConfig(tc.dev, nil), exists)
		if (err != nil) != tc.fail {
			t.Errorf("prepare %q: %v", tc.dev, err)
		}
	}
	if _, err := openUTUNCapture(DefaultConfig("tun0", nil), newFakeBSD(), logrus.New()); err == nil {
		t.Error("opened a capture on tun0")
	}
}

func TestIPv4Mask(t *testing.T) {
	for bits, want := range map[int]string{0: "0.0.0.0", 8: "255.0.0.0", 20: "255.255.240.0", 32: "255.255.255.255"} {
		if got := ipv4Mask(bits); got != want {
			t.Errorf("ipv4Mask(%d) = %s, want %s", bits, got, want)
		}
	}
}
