package router

import (
	"net/netip"
	"slices"
	"testing"
)

// A rule that names only host names matches the names' answers. While the
// names have none (they did not resolve at start, or stopped resolving) it
// matches nothing and captures nothing: it never turns into "any
// destination".
func TestUnresolvedHostRuleMatchesNothing(t *testing.T) {
	rs := Compile([]Rule{
		{Name: "by-name", Hosts: []string{"nosuch.invalid"}, Action: Tunnel, Profile: "p"},
		{Name: "web", Hosts: []string{"nosuch.invalid"}, Ports: []PortRange{{80, 80}}, Applications: []string{"curl"}, Users: []uint32{0}, Action: Block},
		{Name: "direct", Hosts: []string{"nosuch.invalid"}, Action: Direct},
	})
	curl := &Owner{UID: 0, Exe: "/usr/bin/curl", Name: "curl"}
	for _, tt := range []struct {
		name string
		f    Flow
	}{
		{"v4", Flow{Dst: ap("10.0.0.1:80"), Owner: curl}},
		{"v6", Flow{Dst: ap("[fd00::1]:443")}},
		{"unspecified", Flow{Dst: ap("0.0.0.0:80"), Owner: curl}},
		{"v4-mapped", Flow{Dst: ap("[::ffff:192.0.2.1]:80")}},
		{"another name's answer", Flow{Dst: ap("192.0.2.7:80"), Names: []string{"mail.corp.example"}, Owner: curl}},
		// explain builds such a flow for a name typed on its command
		// line that does not resolve: a name without an address.
		{"the name, without an address", Flow{Dst: netip.AddrPortFrom(netip.Addr{}, 80), Names: []string{"nosuch.invalid"}, Owner: curl}},
		{"no address at all", Flow{Owner: curl}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if d := rs.Decide(tt.f); d.Index != -1 || d.Action != Direct {
				t.Errorf("Decide = rule %d (%v), want none (direct)", d.Index, d.Action)
			}
			d, steps := rs.Explain(tt.f)
			if d.Index != -1 {
				t.Errorf("Explain = rule %d: %s", d.Index, d.Why)
			}
			for _, s := range steps {
				if s.Matched {
					t.Errorf("step %+v matched", s)
				}
			}
		})
	}
	// With an answer, the rule matches that address, and only it.
	if d := rs.Decide(Flow{Dst: ap("192.0.2.7:22"), Names: []string{"nosuch.invalid"}}); d.Index != 0 {
		t.Errorf("with an answer: rule %d, want 0", d.Index)
	}
}

func TestUnresolvedHostRuleCapturesNothing(t *testing.T) {
	rules := []Rule{
		{Name: "by-name", Hosts: []string{"nosuch.invalid"}, Action: Tunnel, Profile: "p"},
		{Name: "blocked", Hosts: []string{"nosuch.invalid"}, Ports: []PortRange{{25, 25}}, Action: Block},
		{Name: "net", Destinations: pfx("10.1.0.0/16"), Action: Tunnel, Profile: "p"},
	}
	for name, resolved := range map[string]func(string) []netip.Addr{
		"no resolver":  nil,
		"no answers":   func(string) []netip.Addr { return nil },
		"empty answer": func(string) []netip.Addr { return []netip.Addr{{}} },
	} {
		t.Run(name, func(t *testing.T) {
			got := Compile(rules).Captured(resolved)
			if want := pfx("10.1.0.0/16"); !slices.Equal(got, want) {
				t.Errorf("Captured = %v, want %v", got, want)
			}
		})
	}
	// Alone, the rule captures nothing at all.
	if got := Compile(rules[:1]).Captured(func(string) []netip.Addr { return nil }); len(got) != 0 {
		t.Errorf("Captured = %v, want nothing", got)
	}
}

// A flow whose user is known but whose executable is not (the process
// exited; explain --user without --app) does not match application rules,
// and says so without an empty name.
func TestOwnerWithoutExecutable(t *testing.T) {
	rs := Compile([]Rule{
		{Name: "curl", Applications: []string{"curl"}, Action: Block},
		{Name: "root", Users: []uint32{0}, Action: Direct},
	})
	f := Flow{Dst: ap("10.0.0.1:80"), Owner: &Owner{UID: 0}}
	d, steps := rs.Explain(f)
	if d.Index != 1 || len(steps) != 2 {
		t.Fatalf("decision %d, steps %+v", d.Index, steps)
	}
	if steps[0].Why != "application unknown" {
		t.Errorf("step 1 says %q, want %q", steps[0].Why, "application unknown")
	}
}

func TestShadowedNamesTheFiles(t *testing.T) {
	rs := Compile([]Rule{
		{Source: "/etc/shunt/shunt.yaml:7", Destinations: pfx("10.0.0.0/8"), Action: Tunnel},
		{Source: "/home/a/.config/shunt/shunt.yaml:3", Destinations: pfx("10.1.0.0/16"), Action: Block},
	})
	sh := rs.Shadowed()
	want := "/home/a/.config/shunt/shunt.yaml:3: rule #2 can never match: rule #1 (/etc/shunt/shunt.yaml:7) before it matches everything it would: remove it, or move it above rule #1 if it is meant to win"
	if len(sh) != 1 || sh[0].String() != want {
		t.Errorf("Shadowed = %v, want\n%s", sh, want)
	}
}

// Decide runs for every flow: it must not allocate, whichever way a rule
// matches or none does.
func TestDecideAllocationFree(t *testing.T) {
	rs := Compile([]Rule{
		{Name: "mutt", Applications: []string{"/usr/bin/mutt"}, Action: Direct},
		{Name: "mail", Hosts: []string{"mail.corp.example"}, Ports: []PortRange{{993, 993}}, Action: Tunnel, Profile: "p"},
		{Name: "corp", Domains: []string{"*.corp.example"}, Action: Tunnel, Profile: "p"},
		{Name: "nets", Destinations: pfx("10.9.0.0/16", "fd09::/32"), Users: []uint32{1000}, Action: Tunnel, Profile: "p"},
		{Name: "unresolved", Hosts: []string{"nosuch.invalid"}, Action: Block},
		{Name: "telnet", Ports: []PortRange{{23, 23}}, Action: Block},
	}, "backup")
	for _, f := range []Flow{
		{Dst: ap("10.9.1.1:993"), Owner: mutt},
		{Dst: ap("10.7.0.5:993"), Names: []string{"mail.corp.example"}, Owner: tbird}, // the resolver's names are canonical
		{Dst: ap("10.7.0.5:25"), Names: []string{"mail.corp.example"}},
		{Dst: ap("[fd09::1]:80"), Owner: tbird},
		{Dst: ap("192.0.2.1:23")},
		{Dst: ap("192.0.2.1:80"), Owner: &Owner{UID: 1}},
		{Dst: netip.AddrPortFrom(netip.Addr{}, 80), Names: []string{"nosuch.invalid"}},
		{Dst: ap("10.9.1.1:80"), Owner: &Owner{UID: 7, Exe: "/opt/backup", Name: "backup"}},
		// Flows to names (fake addresses), matched by host and domain.
		{Dst: ap("198.18.0.3:993"), Host: "mail.corp.example", Owner: tbird},
		{Dst: ap("198.18.0.4:443"), Host: "wiki.corp.example"},
		{Dst: ap("[fd53:6875:6e74:fa6e::5]:80"), Host: "www.example.org", Owner: &Owner{UID: 1000}},
	} {
		if n := testing.AllocsPerRun(100, func() { rs.Decide(f) }); n > 0 {
			t.Errorf("Decide(%v) allocates %v times", f.Dst, n)
		}
	}
}

// An owner whose user is unknown is not root: rules that name uid 0 do not
// match it.
func TestOwnerWithoutUser(t *testing.T) {
	rs := Compile([]Rule{{Name: "root", Users: []uint32{0}, Action: Block}})
	d, steps := rs.Explain(Flow{Dst: ap("10.0.0.1:80"), Owner: &Owner{Exe: "/usr/bin/curl", Name: "curl", NoUID: true}})
	if d.Index != -1 || len(steps) != 1 || steps[0].Why != "user unknown" {
		t.Errorf("decision %d (%s), steps %+v", d.Index, d.Why, steps)
	}
}
