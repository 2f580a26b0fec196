package engine_test

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os/user"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/router"
)

// machine is a machine of its own for reading configurations: alice
// (uid 1000) runs shunt, root is uid 0, and no file the configuration
// names exists. Nothing depends on the machine the tests run on.
func machine() config.Machine {
	users := map[string]*user.User{
		"alice": {Username: "alice", Uid: "1000", HomeDir: "/home/alice"},
		"root":  {Username: "root", Uid: "0", HomeDir: "/root"},
	}
	return config.Machine{
		Getenv:      func(k string) string { return map[string]string{"HOME": "/home/alice", "USER": "alice"}[k] },
		Geteuid:     func() int { return 1000 },
		CurrentUser: func() (*user.User, error) { return users["alice"], nil },
		LookupUser: func(name string) (*user.User, error) {
			if u, ok := users[name]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(name)
		},
		ReadFile: func(name string) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		Stat: func(name string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
}

// parse reads a configuration as shunt.yaml on that machine.
func parse(t *testing.T, yaml string) (*config.Config, error) {
	t.Helper()
	return config.ParseWith("shunt.yaml", []byte(yaml), config.Options{Machine: machine(), SSHConfigFiles: []string{}})
}

func mustConvert(t *testing.T, yaml string) *engine.Plan {
	t.Helper()
	cfg, err := parse(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := engine.Convert(cfg)
	if err != nil {
		t.Fatalf("a configuration config accepts does not convert: %v", err)
	}
	return plan
}

func TestRouterRules(t *testing.T) {
	plan := mustConvert(t, `profiles:
  - name: paper
    host: host1234
rules:
  - name: mail
    sources: [192.168.50.0/24, "fd50::7", 192.168.60.1-192.168.60.2]
    destinations: [10.1.0.0/24, 10.1.2.3, "fd00::/64", "::ffff:10.9.0.0/112", mail.corp.example, "*.corp.example"]
    ports: [25, 110, "993-995"]
    users: [root, 1234]
    applications: [thunderbird]
    action: tunnel
    profile: paper
    host_from_application: true
    fallback_direct: true
  - action: block
    ports: [23]
  - destinations: [any, 10.1.0.0/24, other.example]
    action: direct
always_direct_applications: [ssh]
`)
	want := []router.Rule{
		{
			Name: "mail", Source: "shunt.yaml:5",
			Sources: []netip.Prefix{
				netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("fd50::7/128"),
				netip.MustParsePrefix("192.168.60.1/32"), netip.MustParsePrefix("192.168.60.2/32"),
			},
			Destinations: []netip.Prefix{
				netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("fd00::/64"),
				netip.MustParsePrefix("10.9.0.0/16"),
			},
			Hosts:   []string{"mail.corp.example"},
			Domains: []string{"*.corp.example"},
			Ports:   []router.PortRange{{Lo: 25, Hi: 25}, {Lo: 110, Hi: 110}, {Lo: 993, Hi: 995}},
			Users:   []uint32{0, 1234}, Applications: []string{"thunderbird"},
			AllowedUsers: []uint32{1000}, // alice's, by default
			Action:       router.Tunnel, Profile: "paper", HostFromApplication: true, OnTunnelDown: router.TunnelDownDirect,
		},
		{Source: "shunt.yaml:15", Action: router.Block, Ports: []router.PortRange{{Lo: 23, Hi: 23}}},
		// "any" is for any destination: the others go.
		{Source: "shunt.yaml:17", Action: router.Direct},
	}
	if d := cmp.Diff(want, plan.Rules, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("rules (-want +got):\n%s", d)
	}
	if got := plan.Ruleset.Rules(); len(got) != 3 {
		t.Errorf("compiled %d rules, want 3", len(got))
	}
	if d := plan.Ruleset.Decide(router.Flow{Dst: netip.MustParseAddrPort("10.1.0.7:25"), Owner: &router.Owner{Name: "ssh", Exe: "/usr/bin/ssh"}}); d.Action != router.Direct || d.Rule != nil {
		t.Errorf("an always-direct application: %v by %v, want direct before any rule", d.Action, d.Rule)
	}
}

func TestBrokerProfilesAndProxyRules(t *testing.T) {
	plan := mustConvert(t, `profiles:
  - name: gw
    host: [gw1.corp.example, gw2.corp.example]
    port: 2222
    user: bob
    identity_files: [~/.ssh/work]
    host_key_policy: accept-new
    proxy: socks5://u:p@proxy.corp.example:1080
    keepalive_interval: 20s
    idle_timeout: never
    connections: 2
  - name: inner
    host: 10.2.0.9
    jump: gw
proxy_rules:
  - destinations: ["*.corp.example", 10.0.0.0/8, 192.0.2.7, "::ffff:10.0.0.1"]
    proxy: http://proxy:3128
  - proxy: direct
rules:
  - action: tunnel
    profile: inner
`)
	gw, inner := plan.Profiles[0], plan.Profiles[1]
	if gw.Name != "gw" || fmt.Sprint(gw.Hosts) != "[gw1.corp.example gw2.corp.example]" || gw.Port != 2222 || gw.User != "bob" ||
		fmt.Sprint(gw.IdentityFiles) != "[/home/alice/.ssh/work]" || gw.HostKeyPolicy != broker.AcceptNew ||
		gw.Proxy == nil || gw.Proxy.Redacted() != "socks5://u:xxxxx@proxy.corp.example:1080" ||
		gw.KeepaliveInterval.String() != "20s" || gw.IdleTimeout >= 0 || gw.Connections != 2 {
		t.Errorf("profile gw = %+v", gw)
	}
	if inner.Jump != "gw" || inner.Proxy != nil || inner.HostKeyPolicy != broker.Strict || inner.User != "alice" || inner.Port != 22 {
		t.Errorf("profile inner = %+v", inner)
	}
	r := plan.ProxyRules
	if len(r) != 2 || fmt.Sprint(r[0].Hosts) != "[*.corp.example]" || fmt.Sprint(r[0].Networks) != "[10.0.0.0/8 192.0.2.7/32 10.0.0.1/32]" ||
		r[0].Proxy.String() != "http://proxy:3128" || r[1].Proxy != nil || r[1].Hosts != nil || r[1].Networks != nil {
		t.Errorf("proxy rules = %+v", r)
	}
	route, err := broker.Route(plan.Profiles, plan.ProxyRules, "inner", "")
	if want := "via socks5://u:xxxxx@proxy.corp.example:1080 (profile gw's proxy) to bob@gw1.corp.example:2222; if that fails, via socks5://u:xxxxx@proxy.corp.example:1080 (profile gw's proxy) to bob@gw2.corp.example:2222 (profile gw), then through that connection to alice@10.2.0.9:22"; err != nil || route != want {
		t.Errorf("route = %q, %v\nwant %q", route, err, want)
	}
}

// config checks actions, host-key policies, login methods and proxies as
// words of its own; the router and the broker parse them. The two must
// agree both ways: what config accepts converts, and what it refuses the
// router or broker would refuse too.
func TestConfigAndConversionAgree(t *testing.T) {
	profile := func(key, value string) string {
		return fmt.Sprintf("profiles:\n  - name: p\n    host: gw\n    %s: %s\nrules:\n  - action: tunnel\n    profile: p\n", key, value)
	}
	type sample struct {
		yaml  string
		parse func() error // the router's or broker's own parse
	}
	var samples []sample
	for _, a := range []string{"tunnel", "direct", "block", "drop", "Tunnel", "allow"} {
		y := "rules:\n  - action: " + a + "\n"
		if a == "tunnel" {
			y = "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: tunnel\n    profile: p\n"
		}
		samples = append(samples, sample{y, func() error { _, err := router.ParseAction(a); return err }})
	}
	for _, p := range []string{"strict", "accept-new", "ask", "yes", "Strict", "accept_new"} {
		samples = append(samples, sample{profile("host_key_policy", p), func() error { _, err := broker.ParseHostKeyPolicy(p); return err }})
	}
	for _, u := range []string{"socks4://10.0.0.1:1080", "socks4a://proxy:1080", "socks5://proxy:1080", "socks5://u:p%40ss@proxy:1080",
		"http://proxy:3128", "http://[fd00::1]:3128", "ftp://x:1", "socks5://proxy", "http://:3128", "proxy:1080", "socks5://%zz:1"} {
		samples = append(samples, sample{profile("proxy", `"`+u+`"`), func() error { _, err := broker.ParseProxy(u); return err }})
		samples = append(samples, sample{"proxy_rules:\n  - proxy: \"" + u + "\"\n", func() error { _, err := broker.ParseProxy(u); return err }})
	}
	for _, s := range samples {
		cfg, cerr := parse(t, s.yaml)
		perr := s.parse()
		switch {
		case cerr == nil && perr != nil:
			t.Errorf("config accepts what the router or broker refuses (%v):\n%s", perr, s.yaml)
		case cerr != nil && perr == nil:
			t.Errorf("config refuses what the router or broker accepts (%v):\n%s", cerr, s.yaml)
		case cerr == nil:
			if _, err := engine.Convert(cfg); err != nil {
				t.Errorf("config accepts it, the conversion fails (%v):\n%s", err, s.yaml)
			}
		}
	}
	for _, m := range config.DefaultAuthMethods {
		if !strings.Contains(broker.AuthPublicKey+" "+broker.AuthKeyboardInteractive+" "+broker.AuthPassword, m) {
			t.Errorf("config's auth method %q is not the broker's", m)
		}
	}
	if d := cmp.Diff([]string{broker.AuthPublicKey, broker.AuthKeyboardInteractive, broker.AuthPassword}, config.DefaultAuthMethods); d != "" {
		t.Errorf("config's default auth methods are not the broker's (-broker +config):\n%s", d)
	}
}

// A value that did not convert is an error at its file and line, never
// dropped: each one is reported.
func TestConvertReportsEveryError(t *testing.T) {
	cfg := &config.Config{
		Path: "c.yaml",
		Profiles: []config.Profile{
			{Name: "p", Host: config.StringList{"gw"}, HostKeyPolicy: "trust", File: "c.yaml", Line: 2},
			{Name: "q", Host: config.StringList{"gw"}, Proxy: "ftp://x:1", File: "c.yaml", Line: 5},
		},
		ProxyRules: []config.ProxyRule{{Proxy: "gopher://x:70", File: "c.yaml", Line: 8}},
		Rules:      []config.Rule{{Action: "drop", File: "c.yaml", Line: 10}},
	}
	_, err := engine.Convert(cfg)
	if err == nil {
		t.Fatal("no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 4 {
		t.Fatalf("want four errors, got %v", err)
	}
	for _, want := range []string{
		`c.yaml:10: rule #1: unknown action "drop"`,
		`c.yaml:2: profile "p": unknown host key policy "trust"`,
		`c.yaml:5: profile "q": proxy URL has the unknown scheme "ftp"`,
		`c.yaml:8: proxy rule #1: proxy URL has the unknown scheme "gopher"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
