package router

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

// localSet is a Locals of fixed addresses.
type localSet []netip.Addr

func (l localSet) IsLocal(a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

var _ Locals = localSet(nil)

func TestDecideSources(t *testing.T) {
	rules := []Rule{
		{Name: "lan-mail", Sources: pfx("192.168.50.0/24", "fd50::/64"), Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "office"},
		{Name: "lan-block", Sources: pfx("192.168.60.7/32"), Action: Block},
		{Name: "office", Destinations: pfx("10.1.0.0/16"), Action: Tunnel, Profile: "office"},
	}
	rs := Compile(rules)
	tests := []struct {
		src       string
		forwarded bool
		dst       string
		wantIndex int
		wantAct   Action
		wantWhy   string // of the decision, or of the first step when it is unmatched
	}{
		// Forwarded: only rules whose sources cover the source.
		{"192.168.50.9:4000", true, "10.1.0.5:25", 0, Tunnel, "source 192.168.50.9 in 192.168.50.0/24, destination 10.1.0.5 in 10.1.0.0/24, any port"},
		{"[fd50::9]:4000", true, "10.1.0.5:25", 0, Tunnel, ""},
		{"[::ffff:192.168.50.9]:4000", true, "10.1.0.5:25", 0, Tunnel, ""},
		{"192.168.50.9:4000", true, "10.1.7.5:25", -1, Block, "forwarded flow from 192.168.50.9 (another host), and no rule with sources: covering it matches: refused; add sources: [192.168.50.9] to a rule to let it through"},
		{"192.168.60.7:4000", true, "8.8.8.8:53", 1, Block, ""},
		{"192.168.99.1:4000", true, "10.1.0.5:25", -1, Block, ""},
		// Local: rules without sources match; with sources, only a
		// covered source.
		{"192.168.99.1:4000", false, "10.1.0.5:25", 2, Tunnel, ""},
		{"192.168.50.1:4000", false, "10.1.0.5:25", 0, Tunnel, ""},
		{"127.0.0.1:4000", false, "10.9.0.5:25", -1, Direct, "no rule matches: direct"},
	}
	for _, tt := range tests {
		f := Flow{Src: netip.MustParseAddrPort(tt.src), Dst: netip.MustParseAddrPort(tt.dst), Forwarded: tt.forwarded}
		d, steps := rs.Explain(f)
		if d.Index != tt.wantIndex || d.Action != tt.wantAct {
			t.Errorf("%s (forwarded %v) -> %s: rule %d %v (%s), want %d %v", tt.src, tt.forwarded, tt.dst, d.Index, d.Action, d.Why, tt.wantIndex, tt.wantAct)
			continue
		}
		if tt.wantWhy != "" && d.Why != tt.wantWhy {
			t.Errorf("%s -> %s: why %q, want %q", tt.src, tt.dst, d.Why, tt.wantWhy)
		}
		if dd := rs.Decide(f); dd.Index != d.Index || dd.Action != d.Action {
			t.Errorf("Decide and Explain disagree: %+v, %+v", dd, d)
		}
		if d.Index < 0 && tt.forwarded && len(steps) != len(rules) {
			t.Errorf("%s: %d steps, want one for each rule", tt.src, len(steps))
		}
	}
	// The explanation says why each rule was skipped.
	_, steps := rs.Explain(Flow{Src: netip.MustParseAddrPort("192.168.99.1:4000"), Dst: netip.MustParseAddrPort("10.1.0.5:25"), Forwarded: true})
	want := []string{
		"source 192.168.99.1 not in [192.168.50.0/24 fd50::/64]",
		"source 192.168.99.1 not in [192.168.60.7/32]",
		"flow forwarded from 192.168.99.1 (another host): only rules with sources: covering it match it",
	}
	for i, s := range steps {
		if s.Matched || s.Why != want[i] {
			t.Errorf("step %d: %+v, want %q", i+1, s, want[i])
		}
	}
	_, steps = rs.Explain(Flow{Dst: netip.MustParseAddrPort("10.1.0.5:25")})
	if len(steps) != 3 || !strings.HasPrefix(steps[0].Why, "source unknown") || !steps[2].Matched {
		t.Errorf("no source given: steps %+v", steps)
	}
}

// A forwarded flow decides without allocating too, matched or refused.
func TestDecideSourcesAllocationFree(t *testing.T) {
	rs := Compile([]Rule{
		{Sources: pfx("192.168.50.0/24"), Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "p"},
		{Destinations: pfx("10.1.0.0/16"), Action: Tunnel, Profile: "p"},
	})
	none := Compile([]Rule{{Destinations: pfx("10.1.0.0/16"), Action: Tunnel, Profile: "p"}})
	for _, f := range []Flow{
		{Src: ap("192.168.50.9:4000"), Dst: ap("10.1.0.5:25"), Forwarded: true},
		{Src: ap("192.168.51.9:4000"), Dst: ap("10.1.0.5:25"), Forwarded: true},
		{Src: ap("192.168.50.9:4000"), Dst: ap("10.1.0.5:25")},
	} {
		for _, rs := range []*Ruleset{rs, none} {
			if n := testing.AllocsPerRun(100, func() { rs.Decide(f) }); n > 0 {
				t.Errorf("Decide(%v from %v) allocates %v times", f.Dst, f.Src, n)
			}
		}
	}
}

func TestShadowedSources(t *testing.T) {
	for _, tt := range []struct {
		a, b   []netip.Prefix
		shadow bool
	}{
		{nil, nil, true},
		{nil, pfx("192.168.50.0/24"), false}, // b serves forwarded flows a does not
		{pfx("192.168.50.0/24"), nil, false}, // b serves every local flow
		{pfx("192.168.0.0/16"), pfx("192.168.50.0/24"), true},
		{pfx("192.168.50.0/24"), pfx("192.168.0.0/16"), false},
	} {
		rs := Compile([]Rule{
			{Sources: tt.a, Destinations: pfx("10.0.0.0/8"), Action: Tunnel},
			{Sources: tt.b, Destinations: pfx("10.1.0.0/16"), Action: Block},
		})
		if got := len(rs.Shadowed()) == 1; got != tt.shadow {
			t.Errorf("sources %v before %v: shadowed %v, want %v", tt.a, tt.b, got, tt.shadow)
		}
	}
}

// The router finds forwarded flows by Locals: one no rule's sources cover
// is refused, and its source warned about once; one a rule's sources
// cover is tunnelled, whatever the profile's allowed_users; this host's
// own flows go as before.
func TestHandleTCPForwarded(t *testing.T) {
	rules := []Rule{
		{Name: "lan", Sources: pfx("192.168.50.0/24"), Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "office", AllowedUsers: []uint32{1000}},
		{Name: "office", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "office"},
	}
	f := &routertest.Dialer{}
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	r := New(rules, Options{Tunnels: f, Direct: f, Log: log, Locals: localSet{netip.MustParseAddr("192.168.1.1")}})
	handle := func(src, dst string) bool {
		accepted := false
		r.HandleTCP(context.Background(), netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), "", func() (net.Conn, error) {
			accepted = true
			a, b := net.Pipe()
			go a.Close()
			return b, nil
		})
		r.Wait()
		return accepted
	}
	if !handle("192.168.50.9:4000", "10.1.0.5:25") {
		t.Error("a forwarded flow its sources cover was refused")
	}
	for range 3 {
		if handle("192.168.77.9:4000", "10.1.0.5:25") {
			t.Error("a forwarded flow no rule's sources cover was accepted")
		}
	}
	if !handle("192.168.1.1:4000", "10.1.0.5:25") || !handle("127.0.0.1:4000", "10.1.0.5:25") {
		t.Error("a local flow was refused")
	}
	if got, want := f.Dials(), []string{"office/10.1.0.5:25", "office/10.1.0.5:25", "office/10.1.0.5:25"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("dialed %v, want %v", got, want)
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			warned++
			if !strings.Contains(e.Message, "add sources: [192.168.77.9] to a rule to let it through") {
				t.Errorf("warning %q does not say the fix", e.Message)
			}
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings, want one for the one source", warned)
	}
}

func TestForwardedSeenBound(t *testing.T) {
	var s forwardedSeen
	fulls := 0
	for i := range maxWarnedSources + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		first, full := s.first(a)
		if full {
			fulls++
		}
		if first != (i < maxWarnedSources) {
			t.Fatalf("source %d: first %v", i, first)
		}
	}
	if fulls != 1 {
		t.Errorf("said full %d times", fulls)
	}
}
