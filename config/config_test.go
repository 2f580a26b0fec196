package config

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
)

const example = `profiles:
  - name: paper
    host: host1234
    port: 2222
    user: alice
    identity_files: [~/.ssh/id_ed25519]
    known_hosts: /etc/shunt/known_hosts
rules:
  - name: mail
    destinations: [10.1.0.0/24, 10.1.2.3, "fd00::/64"]
    ports: [25, 110, 143, "993-995"]
    action: tunnel
    profile: paper
  - action: block
    ports: [23]
tun:
  name: shunt7
  mtu: 9000
log:
  level: debug
`

func TestParseExample(t *testing.T) {
	e := newTestEnv(t)
	e.file("/etc/shunt/known_hosts", "", 0o644)
	e.file("/home/alice/.ssh/id_ed25519", testKey(t), 0o600)
	c, err := e.parse("shunt.yaml", example)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := c.Profile("paper")
	want := Profile{
		Name: "paper", Host: StringList{"host1234"}, Port: 2222, User: "alice",
		IdentityFiles: []string{"/home/alice/.ssh/id_ed25519"}, KnownHosts: StringList{"/etc/shunt/known_hosts"},
		Line: 2, File: "shunt.yaml",
	}
	if d := diff(want, p); d != "" {
		t.Errorf("profile (-want +got):\n%s", d)
	}
	if len(c.Problems) > 0 {
		t.Errorf("problems: %v", c.Problems)
	}
	// The engine turns these into the router's rules (engine.RouterRules).
	if got := rulePrefixes(c.Rules[0]); got != "[10.1.0.0/24 10.1.2.3/32 fd00::/64]" {
		t.Errorf("rule 1 destinations = %s", got)
	}
	if got := rulePorts(c.Rules[0]); got != "[25 110 143 993-995]" {
		t.Errorf("rule 1 ports = %s", got)
	}
	if r := c.Rules[1]; r.Action != ActionBlock || rulePorts(r) != "[23]" || r.File != "shunt.yaml" || r.Line != 14 {
		t.Errorf("rule 2 = %s %s at %s:%d", r.Action, rulePorts(r), r.File, r.Line)
	}
	if d := diff(TUN{Name: "shunt7", MTU: 9000, Line: 17, File: "shunt.yaml"}, c.TUN); d != "" {
		t.Errorf("tun (-want +got):\n%s", d)
	}
	if d := diff(Log{Level: "debug", Format: LogText, Line: 20, File: "shunt.yaml"}, c.Log); d != "" {
		t.Errorf("log (-want +got):\n%s", d)
	}
}

func TestDefaults(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("d.yaml", "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: tunnel\n    profile: p\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Profile{Name: "p", Host: StringList{"gw"}, Port: 22, User: "alice", KnownHosts: StringList{"/home/alice/.ssh/known_hosts"}, Line: 2, File: "d.yaml"}
	if d := diff(want, c.Profiles[0]); d != "" {
		t.Errorf("profile defaults (-want +got):\n%s", d)
	}
	// Absent default identity files are normal: no warning.
	if len(c.Problems) > 0 {
		t.Errorf("problems: %v", c.Problems)
	}
	if d := diff(TUN{Name: DefaultTUNName(runtime.GOOS), MTU: DefaultMTU, File: "d.yaml"}, c.TUN); d != "" {
		t.Errorf("tun defaults (-want +got):\n%s", d)
	}
	if d := diff(Log{Level: "info", Format: LogText, File: "d.yaml"}, c.Log); d != "" {
		t.Errorf("log defaults (-want +got):\n%s", d)
	}
}

// TestTUNNameIsTuns: config fills tun.name's default for this OS but
// leaves the OS's rules to tun.CheckName (shunt check and the engine
// apply them), so a name no OS takes parses, and TUN.Errorf places the
// finding at the tun section.
func TestTUNNameIsTuns(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("n.yaml", "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: tunnel\n    profile: p\ntun:\n  name: far/too long for any OS\n")
	if err != nil {
		t.Fatalf("config judged the name itself: %v", err)
	}
	if c.TUN.Name != "far/too long for any OS" {
		t.Errorf("tun.name = %q", c.TUN.Name)
	}
	if got, want := c.TUN.Errorf("tun.name %q is bad", c.TUN.Name).Error(), `n.yaml:8: tun.name "far/too long for any OS" is bad`; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}
	if got := (&TUN{}).Errorf("no file").Error(); got != "no file" {
		t.Errorf("Errorf without a file = %q", got)
	}
	for goos, want := range map[string]string{"linux": "shunt0", "darwin": "utun", "windows": "shunt"} {
		if got := DefaultTUNName(goos); got != want {
			t.Errorf("DefaultTUNName(%s) = %q, want %q", goos, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // each must appear in the error
	}{
		{"unknown key with suggestion", "profiles:\n  - name: p\n    hots: gw\n",
			[]string{`x.yaml:3: unknown key "hots" in profiles: did you mean "host"?`}},
		{"unknown top-level key", "rulez: []\n",
			[]string{`x.yaml:1: unknown key "rulez": did you mean "rules"?`}},
		{"unrelated key lists known keys", "tun:\n  colour: red\n",
			[]string{`x.yaml:2: unknown key "colour" in tun: known keys are name, mtu`}},
		{"bad destination", "rules:\n  - action: block\n    destinations:\n      - 10.1.0.0/33\n",
			[]string{`x.yaml:4: rule #1: destination "10.1.0.0/33" is not an IP address, network, range, host name`}},
		{"bad range", "rules:\n  - action: block\n    destinations: [10.0.0.9-10.0.0.1, 10.0.0.1-fd00::1]\n",
			[]string{`destination "10.0.0.9-10.0.0.1" is not an address range`, `destination "10.0.0.1-fd00::1" is not an address range`}},
		{"bad names", "rules:\n  - action: block\n    destinations: [\"*.bad_one\", \"bad_name.example\", 10.1.2]\n",
			[]string{`destination "*.bad_one" is not a domain wildcard`, `destination "bad_name.example" is not an IP address`, `destination "10.1.2" is not`}},
		{"unknown user", "rules:\n  - action: block\n    users: [no-such-user-here]\n",
			[]string{`x.yaml:3: rule #1: user "no-such-user-here" is unknown on this machine`}},
		{"relative app path", "rules:\n  - action: block\n    applications: [bin/mutt]\n",
			[]string{`application "bin/mutt": write an executable name (thunderbird) or an absolute path`}},
		{"fallback on block", "rules:\n  - action: block\n    fallback_direct: true\n",
			[]string{`host_from_application and fallback_direct only apply to action: tunnel`}},
		{"host bits", "rules:\n  - action: block\n    destinations: [10.1.0.1/24]\n",
			[]string{`x.yaml:3: rule #1: destination "10.1.0.1/24" has host bits set: write 10.1.0.0/24`}},
		{"bad port range", "rules:\n  - action: block\n    ports: [\"995-993\", 0, 70000]\n",
			[]string{`x.yaml:3: rule #1: port "995-993"`, `port "0"`, `port "70000"`}},
		{"unknown profile", "profiles:\n  - name: paper\n    host: gw\nrules:\n  - name: mail\n    action: tunnel\n    profile: papr\n",
			[]string{`x.yaml:5: rule #1 "mail": unknown profile "papr": use one of paper`}},
		{"tunnel without profile", "rules:\n  - action: tunnel\n",
			[]string{`x.yaml:2: rule #1 tunnels but names no profile`}},
		{"bad action", "rules:\n  - action: drop\n",
			[]string{`x.yaml:2: rule #1: unknown action "drop": use tunnel, direct or block`}},
		{"empty destinations", "rules:\n  - action: block\n    destinations: []\n    ports:\n",
			[]string{`x.yaml:3: rule #1: destinations is empty, and an empty list would match any destination: list them, or leave the key out`,
				`x.yaml:4: rule #1: ports is empty, and an empty list would match every port`}},
		{"null users", "rules:\n  - action: block\n    users: ~\n    applications: []\n",
			[]string{`x.yaml:3: rule #1: users is empty`, `x.yaml:4: rule #1: applications is empty`}},
		{"missing action", "rules:\n  - ports: [25]\n",
			[]string{`x.yaml:2: rule #1 has no action`}},
		{"profile on block", "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: block\n    profile: p\n",
			[]string{`x.yaml:5: rule #1: profile is only used with action: tunnel`}},
		{"duplicate profile and no host", "profiles:\n  - name: p\n    host: a\n  - name: p\n",
			[]string{`x.yaml:4: profile "p" is defined twice`, `x.yaml:4: profile "p" has no host`}},
		{"wrong type", "profiles:\n  - name: p\n    host: gw\n    port: twenty\n",
			[]string{"x.yaml:4: expected a number, found the text `twenty`"}},
		{"syntax", "rules: [\n", []string{`x.yaml:`}},
		{"mtu", "tun:\n  mtu: 100\n", []string{`x.yaml:2: tun.mtu 100 is out of range`}},
		{"level", "log:\n  level: loud\n", []string{`x.yaml:2: log.level "loud" is not a level`}},
		{"empty", "", []string{`x.yaml:1: the file holds no settings (it is empty, or only comments)`}},
		{"only comments", "# nothing yet\n", []string{`x.yaml:1: the file holds no settings`}},
		{"password", "profiles:\n  - name: p\n    host: gw\n    password: hunter2\n",
			[]string{`x.yaml:4: passwords never go in the config file: remove it; shunt asks for it`}},
		{"proxy", "profiles:\n  - name: p\n    host: gw\n    proxy: ftp://x:1\n",
			[]string{`x.yaml:2: profile "p": proxy URL has the unknown scheme "ftp": write socks4://, socks4a://, socks5:// or http://`}},
		{"jump loop", "profiles:\n  - name: a\n    host: x\n    jump: b\n  - name: b\n    host: y\n    jump: a\n",
			[]string{`profiles jump in a loop: a -> b -> a`}},
		{"policy", "profiles:\n  - name: p\n    host: gw\n    host_key_policy: trust\n",
			[]string{`unknown host key policy "trust": use strict, accept-new or ask`}},
		{"auth method", "profiles:\n  - name: p\n    host: gw\n    auth_methods: [gssapi]\n",
			[]string{`unknown auth method "gssapi"`}},
		{"duration", "profiles:\n  - name: p\n    host: gw\n    idle_timeout: soon\n",
			[]string{`x.yaml:4: profile "p": "soon" is not a duration`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestEnv(t).parse("x.yaml", tt.yaml)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
		})
	}
}

func TestV4MappedDestinationIsUnmapped(t *testing.T) {
	c, err := newTestEnv(t).parse("m.yaml", ("rules:\n  - action: block\n    destinations: [\"::ffff:10.0.0.0/104\", \"::ffff:10.1.2.3\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := c.Rules[0].Destinations
	if d[0].Prefixes[0] != netip.MustParsePrefix("10.0.0.0/8") || d[1].Prefixes[0] != netip.MustParsePrefix("10.1.2.3/32") {
		t.Fatalf("destinations = %v, %v", d[0].Prefixes, d[1].Prefixes)
	}
}

func TestRuleModelFields(t *testing.T) {
	c, err := newTestEnv(t).parse("r.yaml", (`profiles:
  - name: p
    host: gw
rules:
  - name: every-form
    destinations: [10.0.0.5-10.0.0.20, mail.corp.example, "*.corp.example", fd00::1-fd00::3, 10.9.0.0/16]
    applications: [thunderbird, /usr/bin/mutt]
    users: [root, 1234]
    action: tunnel
    profile: p
    host_from_application: true
    fallback_direct: true
  - destinations: [any, 10.1.0.0/24]
    action: block
always_direct_applications: [ssh]
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rules
	want := "[10.0.0.5/32 10.0.0.6/31 10.0.0.8/29 10.0.0.16/30 10.0.0.20/32 fd00::1/128 fd00::2/127 10.9.0.0/16]"
	if got := rulePrefixes(r[0]); got != want {
		t.Errorf("prefixes = %s, want %s", got, want)
	}
	var hosts, domains []string
	for _, d := range r[0].Destinations {
		if d.Host != "" {
			hosts = append(hosts, d.Host)
		}
		if d.Domain != "" {
			domains = append(domains, d.Domain)
		}
	}
	if fmt.Sprint(hosts) != "[mail.corp.example]" || fmt.Sprint(domains) != "[*.corp.example]" {
		t.Errorf("hosts %v, domains %v", hosts, domains)
	}
	var uids []uint32
	for _, u := range r[0].Users {
		uids = append(uids, u.UID)
	}
	if fmt.Sprint(r[0].Applications) != "[thunderbird /usr/bin/mutt]" || fmt.Sprint(uids) != "[0 1234]" {
		t.Errorf("applications %v, users %v", r[0].Applications, uids)
	}
	if !r[0].HostFromApplication || !r[0].FallbackDirect {
		t.Error("flags lost")
	}
	if d := r[1].Destinations; len(d) != 2 || !d[0].Any || d[1].Any {
		t.Errorf("any is not recorded as any: %+v", d)
	}
	if fmt.Sprint(c.Hosts()) != "[mail.corp.example]" || fmt.Sprint(c.AlwaysDirectApplications) != "[ssh]" {
		t.Errorf("hosts %v, always direct %v", c.Hosts(), c.AlwaysDirectApplications)
	}
}

// rulePrefixes lists the networks of a rule's destinations, in order.
func rulePrefixes(r Rule) string {
	var out []netip.Prefix
	for _, d := range r.Destinations {
		out = append(out, d.Prefixes...)
	}
	return fmt.Sprint(out)
}

// rulePorts lists a rule's ports as "25" and "993-995".
func rulePorts(r Rule) string {
	var out []string
	for _, p := range r.Ports {
		if p.Lo == p.Hi {
			out = append(out, fmt.Sprint(p.Lo))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", p.Lo, p.Hi))
		}
	}
	return fmt.Sprint(out)
}
