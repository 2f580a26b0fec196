package config

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The contract: sources: beside destinations: on a rule.
func TestSources(t *testing.T) {
	c, err := newTestEnv(t).parse("s.yaml", `profiles:
  - name: office
    host: gw
rules:
  - sources: [192.168.50.0/24, 192.168.60.7, "fd50::/64", 192.168.70.1-192.168.70.2, "::ffff:192.168.80.0/120"]
    destinations: [10.1.0.0/16]
    action: tunnel
    profile: office
  - destinations: [10.1.0.0/16]
    action: tunnel
    profile: office
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	for _, s := range c.Rules[0].Sources {
		got = append(got, s.Prefixes...)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("192.168.60.7/32"), netip.MustParsePrefix("fd50::/64"),
		netip.MustParsePrefix("192.168.70.1/32"), netip.MustParsePrefix("192.168.70.2/32"), netip.MustParsePrefix("192.168.80.0/24"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sources = %v, want %v", got, want)
	}
	if len(c.Rules[1].Sources) != 0 {
		t.Errorf("a rule without sources has %v", c.Rules[1].Sources)
	}
}

func TestSourcesErrors(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"rules:\n  - action: block\n    sources:\n      - lan-host.example\n",
			`x.yaml:4: rule #1: source "lan-host.example" is a name, and sources takes addresses, networks and ranges only (a flow's source is never looked up): write the host's address, e.g. 192.168.50.7, or its network, e.g. 192.168.50.0/24`},
		{"rules:\n  - action: block\n    sources: [\"*.lan\"]\n", `x.yaml:3: rule #1: source "*.lan" is a name`},
		{"rules:\n  - action: block\n    sources: [any]\n", `x.yaml:3: rule #1: source "any": sources takes addresses and networks; to let every host through, write 0.0.0.0/0 and ::/0`},
		{"rules:\n  - action: block\n    sources: [192.168.50.1/24]\n", `x.yaml:3: rule #1: source "192.168.50.1/24" has host bits set: write 192.168.50.0/24`},
		{"rules:\n  - action: block\n    sources: [192.168.50.9-192.168.50.1]\n", `x.yaml:3: rule #1: source "192.168.50.9-192.168.50.1" is not an address range`},
		{"rules:\n  - action: block\n    sources: [192.168.50]\n", `x.yaml:3: rule #1: source "192.168.50" is not an IP address, network or range`},
		{"rules:\n  - action: block\n    sources: [[192.168.50.1]]\n", `x.yaml:3: rule #1: a source is an address, network or range`},
		{"rules:\n  - action: block\n    sources: []\n", `x.yaml:3: rule #1: sources is empty, and an empty list would match this host's own flows only`},
	} {
		_, err := newTestEnv(t).parse("x.yaml", tt.yaml)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error\n%v\nwant it to contain\n%s", tt.yaml, err, tt.want)
		}
	}
}
