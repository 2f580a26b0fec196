package router

import (
	"net/netip"
	"reflect"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func flow(dst string) Flow {
	return Flow{Src: netip.MustParseAddrPort("192.0.2.1:40000"), Dst: netip.MustParseAddrPort(dst)}
}

func TestDecide(t *testing.T) {
	rules := []Rule{
		{Name: "mail", Destinations: pfx("10.1.0.0/24", "10.1.2.3/32", "fd00::/64"), Ports: []PortRange{{25, 25}, {110, 110}, {143, 143}, {993, 995}}, Action: Tunnel, Profile: "paper"},
		{Name: "no-telnet", Ports: []PortRange{{23, 23}}, Action: Block},
		{Name: "printer", Destinations: pfx("10.1.0.9/32"), Action: Direct},
		{Name: "rest", Destinations: pfx("10.1.0.0/16"), Action: Tunnel, Profile: "paper"},
	}
	tests := []struct {
		dst       string
		wantIndex int
		wantWhy   string
	}{
		{"10.1.0.7:25", 0, "destination 10.1.0.7 in 10.1.0.0/24, port 25 in 25"},
		{"10.1.2.3:994", 0, "destination 10.1.2.3 in 10.1.2.3/32, port 994 in 993-995"},
		{"10.1.2.3:995", 0, ""},
		{"10.1.2.3:996", 3, ""},
		{"10.1.2.4:25", 3, ""},
		{"[fd00::1]:143", 0, ""},
		{"[fd00:0:0:1::1]:143", -1, "no rule matches: direct"},
		{"[::ffff:10.1.0.7]:25", 0, ""}, // v4-mapped is matched as IPv4
		{"8.8.8.8:23", 1, "any destination, port 23 in 23"},
		{"10.1.0.9:25", 0, ""}, // mail comes first
		{"10.1.0.9:80", 2, "destination 10.1.0.9 in 10.1.0.9/32, any port"},
		{"10.2.0.1:80", -1, ""},
	}
	for _, tt := range tests {
		d, _ := Compile(rules).Explain(flow(tt.dst))
		if d.Index != tt.wantIndex {
			t.Errorf("Decide(%s) = rule %d (%s), want %d", tt.dst, d.Index, d.Why, tt.wantIndex)
			continue
		}
		if tt.wantWhy != "" && d.Why != tt.wantWhy {
			t.Errorf("Decide(%s).Why = %q, want %q", tt.dst, d.Why, tt.wantWhy)
		}
		if d.Index < 0 && d.Action != Direct {
			t.Errorf("unmatched flow gets %v, want direct", d.Action)
		}
		if d.Index >= 0 && d.Action != rules[d.Index].Action {
			t.Errorf("action %v differs from the rule's %v", d.Action, rules[d.Index].Action)
		}
	}
}

func TestCaptured(t *testing.T) {
	rules := []Rule{
		{Destinations: pfx("10.1.0.0/24", "10.1.0.0/24"), Action: Tunnel},
		{Destinations: pfx("10.9.0.0/16"), Action: Direct},
		{Destinations: pfx("10.1.2.3/32", "fd00::1/64"), Action: Block},
	}
	got := Compile(rules).Captured(nil)
	want := pfx("10.1.0.0/24", "10.1.2.3/32", "fd00::/64")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Captured = %v, want %v", got, want)
	}
	got = Compile([]Rule{{Action: Tunnel, Ports: []PortRange{{25, 25}}}}).Captured(nil)
	want = pfx("0.0.0.0/0", "::/0")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Captured(any) = %v, want %v", got, want)
	}
	if got := Compile([]Rule{{Action: Direct}}).Captured(nil); len(got) != 0 {
		t.Errorf("direct-only rules capture %v", got)
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{Tunnel, Direct, Block} {
		got, err := ParseAction(a.String())
		if err != nil || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a, got, err)
		}
	}
	if _, err := ParseAction("drop"); err == nil {
		t.Error("ParseAction(drop) succeeded")
	}
}
