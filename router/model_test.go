package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

var (
	tbird = &Owner{UID: 1000, Exe: "/usr/lib/thunderbird/thunderbird", Name: "thunderbird"}
	mutt  = &Owner{UID: 1001, Exe: "/usr/bin/mutt", Name: "mutt"}
)

func TestDecideEveryField(t *testing.T) {
	rules := []Rule{
		{Name: "mutt-direct", Applications: []string{"/usr/bin/mutt"}, Action: Direct},
		{Name: "mail-host", Hosts: []string{"mail.corp.example"}, Ports: []PortRange{{993, 993}}, Action: Tunnel, Profile: "p"},
		{Name: "corp", Domains: []string{"*.corp.example"}, Action: Tunnel, Profile: "p"},
		{Name: "tbird", Applications: []string{"thunderbird"}, Destinations: pfx("10.9.0.0/16", "fd09::/32"), Action: Tunnel, Profile: "p"},
		{Name: "alice", Users: []uint32{1000}, Destinations: pfx("10.8.0.0/16"), Action: Block},
		{Name: "v6", Destinations: pfx("fd00::/8"), Ports: []PortRange{{22, 22}}, Action: Block},
	}
	rs := Compile(rules)
	if !rs.NeedsOwner() {
		t.Fatal("NeedsOwner = false with application rules")
	}
	tests := []struct {
		name  string
		f     Flow
		want  int
		whyIn string
	}{
		{"mutt goes direct anywhere", Flow{Dst: ap("10.9.1.1:993"), Owner: mutt}, 0, "application /usr/bin/mutt is /usr/bin/mutt"},
		{"host name", Flow{Dst: ap("10.7.0.5:993"), Names: []string{"MAIL.corp.example."}, Owner: tbird}, 1, "is mail.corp.example"},
		{"host name, other port falls to the domain", Flow{Dst: ap("10.7.0.5:25"), Names: []string{"mail.corp.example"}}, 2, "in *.corp.example"},
		{"domain wildcard does not match the apex", Flow{Dst: ap("10.7.0.6:25"), Names: []string{"corp.example"}}, -1, ""},
		{"application by name", Flow{Dst: ap("10.9.3.3:80"), Owner: tbird}, 3, "is thunderbird"},
		{"application by name, v6", Flow{Dst: ap("[fd09::1]:80"), Owner: tbird}, 3, ""},
		{"unknown owner skips app rules", Flow{Dst: ap("10.9.3.3:80")}, -1, ""},
		{"user", Flow{Dst: ap("10.8.1.1:80"), Owner: &Owner{UID: 1000, Exe: "/bin/curl", Name: "curl"}}, 4, "uid 1000"},
		{"other user", Flow{Dst: ap("10.8.1.1:80"), Owner: &Owner{UID: 1002, Exe: "/bin/curl", Name: "curl"}}, -1, ""},
		{"v6 ports", Flow{Dst: ap("[fd12::1]:22")}, 5, "port 22 in 22"},
		{"v6 other port", Flow{Dst: ap("[fd12::1]:23")}, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if plain := rs.Decide(tt.f); plain.Index != tt.want {
				t.Fatalf("Decide: rule %d, want %d", plain.Index, tt.want)
			}
			d, _ := rs.Explain(tt.f)
			if d.Index != tt.want {
				t.Fatalf("rule %d (%s), want %d", d.Index, d.Why, tt.want)
			}
			if !strings.Contains(d.Why, tt.whyIn) {
				t.Errorf("why %q does not contain %q", d.Why, tt.whyIn)
			}
		})
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestExplain(t *testing.T) {
	rs := Compile([]Rule{
		{Name: "web", Ports: []PortRange{{80, 80}, {443, 443}}, Action: Direct},
		{Name: "mail", Destinations: pfx("10.1.0.0/24"), Ports: []PortRange{{25, 25}}, Action: Tunnel, Profile: "p"},
		{Name: "rest", Destinations: pfx("10.0.0.0/8"), Action: Block},
	})
	d, steps := rs.Explain(Flow{Dst: ap("10.1.0.7:25")})
	if d.Index != 1 || len(steps) != 2 {
		t.Fatalf("decision %d, %d steps", d.Index, len(steps))
	}
	if steps[0].Matched || steps[0].Why != "port 25 not in [80 443]" {
		t.Errorf("step 1 = %+v", steps[0])
	}
	if !steps[1].Matched || steps[1].Why != "destination 10.1.0.7 in 10.1.0.0/24, port 25 in 25" {
		t.Errorf("step 2 = %+v", steps[1])
	}
	d, steps = rs.Explain(Flow{Dst: ap("192.0.2.1:25")})
	if d.Index != -1 || len(steps) != 3 || steps[2].Why != "destination 192.0.2.1 not in [10.0.0.0/8]" {
		t.Errorf("unmatched: %+v %+v", d, steps)
	}
}

func TestShadowed(t *testing.T) {
	rs := Compile([]Rule{
		{Destinations: pfx("10.0.0.0/8"), Action: Tunnel},
		{Destinations: pfx("10.1.0.0/16"), Ports: []PortRange{{25, 25}}, Action: Block},    // covered by #1
		{Destinations: pfx("10.1.0.0/16", "192.0.2.0/24"), Action: Block},                  // not: 192.0.2.0/24
		{Ports: []PortRange{{20, 30}}, Action: Direct},                                     // not: any dest
		{Hosts: []string{"a.corp.example"}, Ports: []PortRange{{22, 25}}, Action: Direct},  // covered by #4 (any destination, ports 20-30)
		{Domains: []string{"*.corp.example"}, Action: Tunnel},                              // not
		{Hosts: []string{"b.corp.example"}, Applications: []string{"curl"}, Action: Block}, // covered by #6
		{Destinations: pfx("0.0.0.0/0"), Ports: []PortRange{{25, 25}}, Action: Block},      // not: #4 is ports 20-30 any dest... covered!
	})
	got := fmt.Sprint(rs.Shadowed())
	var want []string
	for _, s := range [][2]int{{2, 1}, {5, 4}, {7, 6}, {8, 4}} {
		want = append(want, fmt.Sprintf("rule #%d can never match: rule #%d before it matches everything it would: remove it, or move it above rule #%d if it is meant to win", s[0], s[1], s[1]))
	}
	if got != fmt.Sprint(want) {
		t.Errorf("Shadowed =\n%s\nwant\n%s", got, want)
	}
}

func TestCapturedFollowsResolvedHosts(t *testing.T) {
	rs := Compile([]Rule{
		{Hosts: []string{"mail.corp.example"}, Action: Tunnel},
		{Domains: []string{"*.corp.example"}, Action: Tunnel},
		{Hosts: []string{"direct.example"}, Action: Direct},
	})
	got := rs.Captured(func(h string) []netip.Addr {
		if h == "mail.corp.example" {
			return []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00::3")}
		}
		return []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	})
	if fmt.Sprint(got) != "[10.1.2.3/32 fd00::3/128]" {
		t.Errorf("Captured = %v", got)
	}
}

type fakeOwners struct{ o *Owner }

func (f fakeOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	if f.o == nil {
		return Owner{}, errors.New("no socket")
	}
	return *f.o, nil
}

func (f fakeOwners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	o, err := f.Lookup(ctx, src, dst)
	return o.UID, err
}

type setupErr struct{}

func (setupErr) Error() string           { return "profile p: connect to SSH server gw:22 direct: refused" }
func (setupErr) TunnelSetupFailed() bool { return true }

func TestFallbackDirectAndAlwaysDirect(t *testing.T) {
	accept := func() (net.Conn, error) {
		a, b := net.Pipe()
		go func() { a.Close() }()
		return b, nil
	}
	rules := []Rule{{Destinations: pfx("10.0.0.0/8"), Action: Tunnel, Profile: "p", OnTunnelDown: TunnelDownDirect}}
	for _, tt := range []struct {
		name     string
		err      error
		owner    *Owner
		always   []string
		wantLast string
	}{
		{"setup failure falls back", setupErr{}, nil, nil, "direct/10.1.1.1:25"},
		{"refused channel does not", errors.New("server could not connect"), nil, nil, "p/10.1.1.1:25"},
		{"always direct app", setupErr{}, mutt, []string{"mutt"}, "direct/10.1.1.1:25"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Tunnels fail with tt.err; direct dials work.
			f := &routertest.Dialer{Fail: func(c routertest.Call) error {
				if c.Profile != "" {
					return tt.err
				}
				return nil
			}}
			log, _ := test.NewNullLogger()
			r := New(rules, Options{Tunnels: f, Direct: f, Owners: fakeOwners{tt.owner}, AlwaysDirect: tt.always, Log: log})
			r.HandleTCP(context.Background(), ap("198.18.0.1:4000"), ap("10.1.1.1:25"), "", accept)
			dials := f.Dials()
			if last := dials[len(dials)-1]; last != tt.wantLast {
				t.Errorf("dials %v, want the last to be %s", dials, tt.wantLast)
			}
			if tt.always != nil && len(dials) != 1 {
				t.Errorf("an always-direct app touched the tunnel: %v", dials)
			}
		})
	}
}

// on_tunnel_down: block (the default) refuses a flow whose tunnel cannot be
// set up and never dials it direct; direct falls back, and only on a set-up
// failure.
func TestOnTunnelDown(t *testing.T) {
	for _, tt := range []struct {
		name      string
		down      TunnelDown
		err       error
		wantDials string
		wantOK    bool
	}{
		{"default block, setup failure", TunnelDownBlock, setupErr{}, "p/10.1.1.1:25", false},
		{"direct, setup failure", TunnelDownDirect, setupErr{}, "p/10.1.1.1:25 direct/10.1.1.1:25", true},
		{"direct, refused channel", TunnelDownDirect, errors.New("server could not connect"), "p/10.1.1.1:25", false},
		{"block, tunnel up", TunnelDownBlock, nil, "p/10.1.1.1:25", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &routertest.Dialer{Fail: func(c routertest.Call) error {
				if c.Profile != "" {
					return tt.err
				}
				return nil
			}}
			log, _ := test.NewNullLogger()
			rules := []Rule{{Destinations: pfx("10.0.0.0/8"), Action: Tunnel, Profile: "p", OnTunnelDown: tt.down}}
			r := New(rules, Options{Tunnels: f, Direct: f, Log: log})
			accepted := false
			r.HandleTCP(context.Background(), ap("198.18.0.1:4000"), ap("10.1.1.1:25"), "", func() (net.Conn, error) {
				accepted = true
				a, b := net.Pipe()
				go func() { a.Close() }()
				return b, nil
			})
			if got := strings.Join(f.Dials(), " "); got != tt.wantDials {
				t.Errorf("dials %q, want %q", got, tt.wantDials)
			}
			if accepted != tt.wantOK {
				t.Errorf("application accepted %v, want %v", accepted, tt.wantOK)
			}
		})
	}
	for _, s := range []string{"block", "direct"} {
		if d, err := ParseTunnelDown(s); err != nil || d.String() != s {
			t.Errorf("ParseTunnelDown(%q) = %v, %v", s, d, err)
		}
	}
	if _, err := ParseTunnelDown("fallback"); err == nil || !strings.Contains(err.Error(), "use block or direct") {
		t.Errorf("ParseTunnelDown(fallback): %v", err)
	}
}

func TestHostFromApplication(t *testing.T) {
	f := &routertest.Dialer{}
	log, _ := test.NewNullLogger()
	r := New([]Rule{{Action: Tunnel, Profile: "p", HostFromApplication: true}}, Options{Tunnels: f, Direct: f, Log: log})
	r.HandleTCP(context.Background(), ap("198.18.0.1:4000"), ap("10.1.1.1:25"), "", func() (net.Conn, error) {
		a, b := net.Pipe()
		go func() { a.Close() }()
		return b, nil
	})
	if dials := f.Dials(); len(dials) != 1 || dials[0] != "p@10.1.1.1/10.1.1.1:25" {
		t.Fatalf("dials = %v, want an SSH connection to 10.1.1.1 itself", dials)
	}
}

// BenchmarkDecide10k: 10,000 rules, each a distinct /24 with ports; the
// flow matches the last one. Per-flow time must not grow with the rule
// count.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		rules := make([]Rule, n)
		for i := range rules {
			rules[i] = Rule{
				Destinations: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)},
				Ports:        []PortRange{{25, 25}, {993, 995}},
				Action:       Tunnel, Profile: "p",
			}
		}
		rs := Compile(rules)
		last := n - 1
		f := Flow{Src: ap("198.18.0.1:40000"), Dst: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(last >> 8), byte(last), 7}), 993)}
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d := rs.Decide(f); d.Index != last {
					b.Fatalf("matched %d", d.Index)
				}
			}
		})
	}
}

// Swapping rules leaves running flows alone and applies to new ones.
func TestSetRulesWhileFlowsRun(t *testing.T) {
	f := &routertest.Dialer{}
	log, _ := test.NewNullLogger()
	r := New([]Rule{{Destinations: pfx("10.0.0.0/8"), Action: Tunnel, Profile: "p"}}, Options{Tunnels: f, Direct: f, Log: log})
	app, flowSide := net.Pipe()
	done := make(chan struct{})
	go func() {
		r.HandleTCP(context.Background(), ap("198.18.0.1:4000"), ap("10.1.1.1:25"), "", func() (net.Conn, error) { return flowSide, nil })
		close(done)
	}()
	app.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(app, buf); err != nil {
		t.Fatal(err)
	}
	r.SetRules([]Rule{{Action: Block}})
	blocked := true
	r.HandleTCP(context.Background(), ap("198.18.0.1:4001"), ap("10.1.1.1:25"), "", func() (net.Conn, error) {
		blocked = false
		return nil, errors.New("unexpected accept")
	})
	if !blocked {
		t.Error("a new flow after the swap was not blocked")
	}
	// The old flow still echoes.
	app.Write([]byte("yo"))
	if _, err := io.ReadFull(app, buf); err != nil || string(buf) != "yo" {
		t.Fatalf("the running flow broke after the swap: %q %v", buf, err)
	}
	app.Close()
	<-done
}
