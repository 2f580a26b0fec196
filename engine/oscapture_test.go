package engine

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/platform/platformtest"
)

// The OS capture as the engine drives it, on platformtest's recording
// capture: Prepare before the device exists, with the plan's kill switch;
// Up opens on the device's real name with the routes and the servers
// exempt; SetRoutes changes the routes before the kill switch follows
// them; a server's new address is exempt at once; Close closes once.
func TestOSCaptureCalls(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]netip.Addr{}}
	dns.set("gw.example", "10.9.0.1")
	plan := exemptPlan(t, "gw.example")
	rec := &platformtest.Captures{}
	var prepared []platform.Config
	c := &osCapture{
		log:    logrus.New(),
		plan:   func() *Plan { return plan },
		exempt: exemptions{lookup: dns.lookup, log: logrus.New()},
		open:   rec.Open,
		prepare: func(cfg platform.Config, _ logrus.FieldLogger) error {
			prepared = append(prepared, cfg)
			return nil
		},
	}
	if err := c.prepareDevice("utun7"); err != nil {
		t.Fatal(err)
	}
	if len(prepared) != 1 || prepared[0].Device != "utun7" || !prepared[0].KillSwitch || prepared[0].Linux.Table != platform.DefaultTable {
		t.Fatalf("prepared %+v", prepared)
	}
	p := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	if err := c.Up("utun7", p("10.0.0.0/8")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRoutes(p("10.0.0.0/8", "192.168.7.0/24")); err != nil {
		t.Fatal(err)
	}
	c.serverConnected("gw.example", netip.MustParseAddr("10.9.0.2"))
	c.serverConnected("gw.example", netip.MustParseAddr("10.9.0.2")) // known now: nothing to change
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // the engine's second Close is a no-op
		t.Fatal(err)
	}
	want := []string{
		"open utun7 routes 10.0.0.0/8 kill-switch on exempt 10.9.0.1",
		"routes 10.0.0.0/8 192.168.7.0/24",
		"kill-switch on exempt 10.9.0.1",
		"kill-switch on exempt 10.9.0.1 10.9.0.2",
		"close",
	}
	if got := rec.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := c.SetRoutes(p("10.0.0.0/8")); err == nil {
		t.Error("SetRoutes after Close: no error")
	}
}
