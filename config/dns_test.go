package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

const dnsProfile = "profiles:\n  - name: office\n    host: gw.example.com\n"

// Without a dns section, DNS handling is on (auto) exactly when a tunnel or
// block rule names a host name or a domain; a section turns it on.
func TestDNSDefaults(t *testing.T) {
	e := newTestEnv(t)
	for _, tt := range []struct {
		name, yaml string
		serve      bool
		mode       string
	}{
		{"networks only", dnsProfile + "rules:\n  - destinations: [10.1.0.0/16]\n    action: tunnel\n    profile: office\n", false, DNSOff},
		{"tunnelled host", dnsProfile + "rules:\n  - destinations: [mail.corp.example]\n    action: tunnel\n    profile: office\n", true, DNSAuto},
		{"blocked domain", "rules:\n  - destinations: ['*.ads.example']\n    action: block\n", true, DNSAuto},
		{"direct host", "rules:\n  - destinations: [intranet.example]\n    action: direct\n", false, DNSOff},
		{"empty section", "dns: {}\nrules:\n  - action: block\n", true, DNSAuto},
		{"explicit off", "dns:\n  mode: off\nrules:\n  - destinations: [mail.corp.example]\n    action: block\n", true, DNSOff},
		{"resolv.conf", "dns:\n  mode: resolv.conf\nrules:\n  - action: block\n", true, DNSResolvConf},
		{"resolved", "dns:\n  mode: systemd-resolved\nrules:\n  - action: block\n", true, DNSResolved},
		{"disabled", "dns:\n  enabled: false\nrules:\n  - destinations: [mail.corp.example]\n    action: block\n", false, DNSOff},
	} {
		c, err := e.parse("d.yaml", tt.yaml)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if c.DNS.Serve != tt.serve || c.DNS.Mode != tt.mode {
			t.Errorf("%s: serve %v mode %q, want %v %q", tt.name, c.DNS.Serve, c.DNS.Mode, tt.serve, tt.mode)
		}
		if !slices.Equal(c.DNS.Prefixes(), netlayout.DefaultFakeRanges()) {
			t.Errorf("%s: fake ranges %v, want the defaults", tt.name, c.DNS.Prefixes())
		}
		if c.StateDir != DefaultStateDir {
			t.Errorf("%s: state_dir %q", tt.name, c.StateDir)
		}
	}
}

// The example section reads as written.
func TestDNSContract(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("d.yaml", dnsProfile+`dns:
  mode: auto
  fake_ips: [198.18.0.0/15, "fd53::/64"]
  resolve_through:
    - domains: [corp.example]
      profile: office
      server: 10.1.0.53:53
state_dir: /tmp/shunt-state
rules:
  - destinations: [10.1.0.0/16]
    action: tunnel
    profile: office
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("fd53::/64")}
	if !slices.Equal(c.DNS.Prefixes(), want) {
		t.Errorf("fake_ips %v, want %v", c.DNS.Prefixes(), want)
	}
	if d := diff([]ResolveThrough{{Domains: []string{"corp.example"}, Profile: "office", Server: "10.1.0.53:53", Line: 8, File: "d.yaml"}}, c.DNS.ResolveThrough); d != "" {
		t.Errorf("resolve_through (-want +got):\n%s", d)
	}
	if !c.DNS.Serve || c.DNS.Mode != DNSAuto || c.StateDir != "/tmp/shunt-state" {
		t.Errorf("dns %+v state_dir %q", c.DNS, c.StateDir)
	}
	// A port-less server gets 53; a wildcard domain means the same domain.
	c, err = e.parse("d.yaml", dnsProfile+"dns:\n  resolve_through:\n    - domains: ['*.Corp.Example.']\n      profile: office\n      server: 10.1.0.53\nrules:\n  - action: block\n")
	if err != nil {
		t.Fatal(err)
	}
	if rt := c.DNS.ResolveThrough[0]; rt.Server != "10.1.0.53:53" || rt.Domains[0] != "corp.example" {
		t.Errorf("resolve_through %+v", rt)
	}
}

// Bad input names file:line and the fix.
func TestDNSErrors(t *testing.T) {
	e := newTestEnv(t)
	for _, tt := range []struct{ yaml, want string }{
		{"dns:\n  mode: dnsmasq\n", `d.yaml:5: dns.mode "dnsmasq" is not a mode: use auto, systemd-resolved, resolv.conf, resolver-dir (macOS), nrpt (Windows) or off`},
		{"dns:\n  fake_ips: [198.18.0.0]\n", `d.yaml:5: dns.fake_ips: fake-IP range "198.18.0.0" is not a network`},
		{"dns:\n  fake_ips: [198.18.0.1/15]\n", `has host bits set: write 198.18.0.0/15`},
		{"dns:\n  fake_ips: [198.18.0.0/30]\n", `is too small to hand out addresses from`},
		{"dns:\n  fake_ips: [169.254.0.0/16]\n", `d.yaml:5: dns.fake_ips: 169.254.0.0/16 overlaps 169.254.83.0/24, which holds shunt's own addresses`},
		{"dns:\n  fake_ips: [\"fd53:6875:6e74::/48\"]\n", `overlaps fd53:6875:6e74::/64, which holds shunt's own addresses`},
		{"dns:\n  fake_ips: [198.18.0.0/15, 198.19.0.0/16]\n", `d.yaml:5: dns.fake_ips: 198.19.0.0/16 overlaps 198.18.0.0/15, listed before it`},
		{"dns:\n  fake_ips: [10.0.0.0/8]\n", `d.yaml:5: dns.fake_ips: 10.0.0.0/8 overlaps 10.1.0.0/16, which rule #1 names (d.yaml:7): a fake address must never be a real destination`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      profile: nope\n      server: 10.1.0.53\n", `d.yaml:6: dns.resolve_through #1: unknown profile "nope": use one of office`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      server: 10.1.0.53\n", `dns.resolve_through #1 names no profile`},
		{"dns:\n  resolve_through:\n    - domains: [bad_domain]\n      profile: office\n      server: 10.1.0.53\n", `d.yaml:6: dns.resolve_through #1: "bad_domain" is not a domain name`},
		{"dns:\n  resolve_through:\n    - profile: office\n      server: 10.1.0.53\n", `names no domains`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      profile: office\n", `dns.resolve_through #1: no server`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      profile: office\n      server: 10.1.0.53:dns\n", `port "dns" is not a port`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      profile: office\n      server: ns.corp.example\n", `server "ns.corp.example" is not an IP address or address:port`},
		{"dns:\n  resolve_through:\n    - domains: [corp.example]\n      profile: office\n      server: ns.corp.example:53\n", `"ns.corp.example" is not an IP address`},
		{"dns:\n  resolve_through:\n    - domains: [a.example]\n      profile: office\n      server: 10.1.0.53\n    - domains: [a.example]\n      profile: office\n      server: 10.1.0.54\n", `dns.resolve_through #2: domain a.example is already resolved through #1`},
		{"dns:\n  enabled: false\n  mode: resolv.conf\n", `d.yaml:5: dns.mode resolv.conf with enabled: false`},
		{"dns:\n  enabled: false\n  resolve_through:\n    - domains: [corp.example]\n      profile: office\n      server: 10.1.0.53\n", `dns.resolve_through needs split DNS, which enabled: false turns off`},
		{"dns:\n  fake_ip: []\n", `unknown key "fake_ip" in dns: did you mean "fake_ips"?`},
		{"state_dir: var/lib/shunt\n", `d.yaml:4: state_dir "var/lib/shunt" is not an absolute path`},
	} {
		const rules = "rules:\n  - destinations: [10.1.0.0/16]\n    action: tunnel\n    profile: office\n"
		_, err := e.parse("d.yaml", dnsProfile+tt.yaml+rules)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got %v\nwant %s", tt.yaml, err, tt.want)
		}
	}
}

// A dns section of a later layer replaces the earlier one as a whole.
func TestDNSLayers(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", dnsProfile+"rules:\n  - action: block\ndns:\n  mode: resolv.conf\nstate_dir: /srv/shunt\n")
	user := write(t, dir, "user.yaml", "dns:\n  mode: off\n")
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if l.DNS.Mode != DNSOff || !l.DNS.Serve || l.DNS.File != user || l.StateDir != "/srv/shunt" {
		t.Errorf("dns %+v state_dir %q", l.DNS, l.StateDir)
	}
}
