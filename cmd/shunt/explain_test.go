package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/dns"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/explain"
	"github.com/shunt-dev/shunt/router"
)

const explainConfig = `profiles:
  - name: office
    host: gw.corp.example
    user: alice
  - name: bastion
    host: bastion.example
    user: bob
  - name: deep
    host: 10.2.0.9
    user: carol
    jump: bastion
rules:
  - name: no-plain-pop
    destinations: [10.1.0.0/24]
    ports: [110]
    action: block
  - name: mail
    destinations: [10.1.0.0/24, "fd00:1::/64"]
    ports: [25, 143, 587, "993-995"]
    action: tunnel
    profile: office
  - name: mutt
    applications: [/usr/bin/mutt]
    destinations: [10.2.0.0/16]
    action: direct
  - name: lab
    destinations: [10.2.0.0/16]
    action: tunnel
    profile: deep
    host_from_application: true
always_direct_applications: [backup]
`

func runExplain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(explainConfig), 0o600)
	var out, errOut bytes.Buffer
	code := run(append([]string{"explain", "--global", "", "--user-config", "", "--config", path}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestExplainText(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"10.1.0.7:993"}, []string{
			"config  ", "shunt.yaml (read)",
			`no     rule #1 "no-plain-pop"    port 993 not in [110]`,
			`MATCH  rule #2 "mail"            destination 10.1.0.7 in 10.1.0.0/24, port 993 in 993-995`,
			"captured: 10.1.0.7 is in 10.1.0.0/24, routed to the TUN device shunt0 by rule #1 \"no-plain-pop\"",
			`tunnel (rule #2 "mail") through profile office: direct to alice@gw.corp.example:22`,
		}},
		{[]string{"10.1.0.7:110"}, []string{`block (rule #1 "no-plain-pop"): the application sees a refused connection`}},
		{[]string{"[fd00:1::5]:25"}, []string{`MATCH  rule #2 "mail"`}},
		{[]string{"--app", "/usr/bin/mutt", "10.2.3.4:22"}, []string{`application /usr/bin/mutt is /usr/bin/mutt`, `direct (rule #3 "mutt")`}},
		{[]string{"10.2.3.4:22", "--app", "/usr/bin/curl"}, []string{`no     rule #3 "mutt"            application /usr/bin/curl not in [/usr/bin/mutt]`,
			`tunnel (rule #4 "lab") through profile deep: direct to bob@bastion.example:22 (profile bastion), then through that connection to carol@10.2.3.4:22`}},
		{[]string{"--app", "/opt/backup", "10.1.0.7:25"}, []string{"direct: application /opt/backup is always direct (backup)"}},
		{[]string{"192.0.2.1:80"}, []string{
			"not captured: no tunnel or block rule routes 192.0.2.1 to the TUN device shunt0: the flow takes the host's normal route, and shunt never sees it",
			"normal route: not captured, so shunt does not see the flow\n"}},
		{[]string{"10.1.0.7"}, []string{"no port given: rules that name ports do not match"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runExplain(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	out, errOut, code := runExplain(t, "--json", "10.1.0.7:993", "--user", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var e explain.Explanation
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if e.Decision.Index != 2 || e.Decision.Action != "tunnel" || e.Decision.Profile != "office" || len(e.Steps) != 2 || e.Flow.UID == nil || *e.Flow.UID != 0 {
		t.Errorf("explanation = %+v", e)
	}
}

func TestImportTectiaCLI(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"import-tectia", "../../tectia/testdata/unconvertible.xml"}, &out, &errOut); code != 1 || out.Len() != 0 ||
		!strings.Contains(errOut.String(), "(not converted)") || !strings.Contains(errOut.String(), "use --best-effort") {
		t.Errorf("unconvertible: exit %d, stdout %d bytes, stderr %q", code, out.Len(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"import-tectia", "--best-effort", "../../tectia/testdata/unconvertible.xml"}, &out, &errOut); code != 0 || out.Len() == 0 {
		t.Errorf("best effort: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"import-tectia", "../../tectia/testdata/broker-config.xml"}, &out, &errOut); code != 0 {
		t.Fatalf("sample: exit %d: %s", code, errOut.String())
	}
	// The converted file is a valid shunt configuration (for a user who
	// has a known_hosts file).
	fixedHome(t)
	path := filepath.Join(t.TempDir(), "converted.yaml")
	os.WriteFile(path, out.Bytes(), 0o600)
	var cOut, cErr bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", path}, &cOut, &cErr); code != 0 {
		t.Errorf("shunt check of the converted file: exit %d\n%s\n--- converted:\n%s", code, cErr.String(), out.String())
	}
}

const explainNamesConfig = `profiles:
  - name: office
    host: gw.corp.example
    user: alice
  - name: bastion
    host: bastion.example
    user: bob
  - name: deep
    host: 10.2.0.9
    user: carol
    jump: bastion
  - name: outside
    host: ssh.example.org
    user: dave
proxy_rules:
  - destinations: ["*.corp.example"]
    proxy: socks5://u:secret@proxy.example:1080
  - destinations: [10.0.0.0/8]
    proxy: direct
rules:
  - name: gone
    destinations: [nosuch.invalid]
    action: tunnel
    profile: office
  - name: mail
    destinations: [mail.corp.example]
    ports: [993]
    action: tunnel
    profile: office
  - name: corp
    destinations: ["*.corp.example"]
    action: tunnel
    profile: office
  - name: lab
    destinations: [10.2.0.0/16]
    action: tunnel
    profile: deep
  - name: curl
    destinations: [10.3.0.0/16]
    applications: [curl]
    action: block
  - name: root-web
    destinations: [10.3.0.0/16]
    users: [0]
    ports: [80]
    action: block
  - name: outside
    destinations: [10.4.0.0/16]
    action: tunnel
    profile: outside
  - name: printer
    destinations: [print.corp.example]
    action: direct
  - name: local
    destinations: [localhost]
    action: block
dns:
  enabled: false # the rules' names are resolved here and their addresses routed
`

// newExplanation is explain.New of cfg, as shunt explain calls it.
func newExplanation(cfg *config.Loaded, dest, app, usr, from string, locals router.Locals, lookup explain.Lookup) (*explain.Explanation, error) {
	c, err := explain.FromLoaded(cfg)
	if err != nil {
		return nil, err
	}
	c.Locals, c.Lookup = locals, lookup
	return explain.New(c, explain.Request{Destination: dest, Application: app, User: usr, From: from})
}

// fakeLookup answers from a table; other names do not exist.
func fakeLookup(table map[string]string) explain.Lookup {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, ok := table[host]; ok {
			return []netip.Addr{netip.MustParseAddr(a)}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}

var explainNames = map[string]string{
	"mail.corp.example":  "10.1.2.3",
	"wiki.corp.example":  "10.1.2.4",
	"print.corp.example": "10.5.0.5",
	"localhost":          "127.0.0.1",
}

// explainWith explains dest under explainNamesConfig with names from
// explainNames, as the text output and as the explanation.
func explainWith(t *testing.T, dest, app, usr string) (string, *explain.Explanation) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(explainNamesConfig), 0o600)
	cfg, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	e, err := newExplanation(cfg, dest, app, usr, "", nil, fakeLookup(explainNames))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printExplanation(&out, e)
	return out.String(), e
}

func TestExplainCaptureRouteAndNames(t *testing.T) {
	tests := []struct {
		name       string
		dest       string
		app, usr   string
		want, lack []string
	}{
		{name: "a rule's host name that does not resolve", dest: "10.2.3.4:22", want: []string{
			"note: nosuch.invalid does not resolve (no such host): until it does, no flow matches a rule by that name, and it captures nothing",
			`no     rule #1 "gone"            destination 10.2.3.4 not in [nosuch.invalid]`,
		}},
		{name: "a destination name that does not resolve", dest: "nosuch.invalid:25",
			want: []string{"flow to nosuch.invalid:25\n", "no flow: nosuch.invalid does not resolve (no such host): no application can connect to it, so shunt sees no flow"},
			lack: []string{"invalid IP", "MATCH", "tunnel"}},
		{name: "not captured, no rule", dest: "10.9.9.9:80", want: []string{
			"not captured: no tunnel or block rule routes 10.9.9.9 to the TUN device shunt0: the flow takes the host's normal route, and shunt never sees it",
			"normal route: not captured, so shunt does not see the flow\n",
		}, lack: []string{"direct: "}},
		{name: "captured, no rule", dest: "10.3.5.5:22", want: []string{
			`captured: 10.3.5.5 is in 10.3.0.0/16, routed to the TUN device shunt0 by rule #5 "curl"`,
			"direct: captured, but no rule matches: shunt connects it directly, not through a tunnel",
		}},
		{name: "by name, through a proxy rule", dest: "mail.corp.example:993", want: []string{
			"flow to mail.corp.example:993 (10.1.2.3)",
			`captured: 10.1.2.3 is in 10.1.2.3/32, routed to the TUN device shunt0 by rule #2 "mail"`,
			`MATCH  rule #2 "mail"            destination 10.1.2.3 is mail.corp.example, port 993 in 993`,
			`tunnel (rule #2 "mail") through profile office: via socks5://u:xxxxx@proxy.example:1080 (proxy rule 1) to alice@gw.corp.example:22`,
		}, lack: []string{"secret", "proxy_rules say"}},
		{name: "by the address a rule's name resolves to", dest: "10.1.2.3:993", want: []string{
			`MATCH  rule #2 "mail"            destination 10.1.2.3 is mail.corp.example`,
		}},
		{name: "a rule's name falls to the domain wildcard", dest: "mail.corp.example:25", want: []string{
			`MATCH  rule #3 "corp"            destination 10.1.2.3 is mail.corp.example, in *.corp.example`,
			`tunnel (rule #3 "corp") through profile office: via socks5`,
		}},
		// The data path knows names only from the rules' host names.
		{name: "a name no rule names", dest: "wiki.corp.example:443", want: []string{
			"flow to wiki.corp.example:443 (10.1.2.4)",
			"not captured: no tunnel or block rule routes 10.1.2.4",
			`no     rule #3 "corp"            destination 10.1.2.4 not in [*.corp.example]`,
		}},
		{name: "matched by a wildcard only: not captured", dest: "print.corp.example:631", want: []string{
			"not captured: no tunnel or block rule routes 10.5.0.5",
			`MATCH  rule #3 "corp"`,
			`normal route: not captured, so shunt does not see the flow; rule #3 "corp" would tunnel it, but matches it only by a *.domain wildcard, and wildcards capture nothing by route`,
		}},
		{name: "loopback", dest: "localhost:25", want: []string{
			"not captured: 127.0.0.1 is a loopback address: the kernel delivers it locally, never to the TUN device shunt0",
			`rule #9 "local" would block it, but loopback addresses are never captured`,
		}},
		{name: "through a jump profile", dest: "10.2.3.4:22", want: []string{
			`tunnel (rule #4 "lab") through profile deep: direct to bob@bastion.example:22 (profile bastion), then through that connection to carol@10.2.0.9:22`,
		}},
		{name: "direct, no proxy rule", dest: "10.4.0.1:22", want: []string{
			`tunnel (rule #7 "outside") through profile outside: direct to dave@ssh.example.org:22`,
		}},
		{name: "user without application", dest: "10.3.1.1:80", usr: "0", want: []string{
			"flow to 10.3.1.1:80, uid 0, application not given: rules that name applications do not match",
			`no     rule #5 "curl"            application unknown`,
			`block (rule #6 "root-web")`,
		}, lack: []string{"application  not", "application not in"}},
		{name: "application without user", dest: "10.3.1.1:80", app: "/usr/bin/wget", want: []string{
			"flow to 10.3.1.1:80, application /usr/bin/wget, user not given: rules that name users do not match",
			`no     rule #6 "root-web"        user unknown`,
			"direct: captured, but no rule matches",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := explainWith(t, tt.dest, tt.app, tt.usr)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, l := range tt.lack {
				if strings.Contains(out, l) {
					t.Errorf("output has %q:\n%s", l, out)
				}
			}
		})
	}
}

func TestExplainJSONCaptureAndRoute(t *testing.T) {
	_, e := explainWith(t, "nosuch.invalid:25", "", "")
	if e.Decision.Action != "none" || e.Capture.Captured || e.Flow.Unresolved != "no such host" || e.Flow.Address != "" || len(e.Steps) != 0 {
		t.Errorf("unresolved destination: %+v", e)
	}
	if len(e.Unresolved) != 1 || e.Unresolved[0].Host != "nosuch.invalid" {
		t.Errorf("unresolved rule hosts = %+v", e.Unresolved)
	}
	_, e = explainWith(t, "mail.corp.example:993", "", "")
	if !e.Capture.Captured || e.Capture.Prefix != "10.1.2.3/32" || e.Capture.Rule != `#2 "mail"` ||
		e.Decision.Route != "via socks5://u:xxxxx@proxy.example:1080 (proxy rule 1) to alice@gw.corp.example:22" {
		t.Errorf("by name: capture %+v, decision %+v", e.Capture, e.Decision)
	}
}

// With split DNS, a name a rule names is never looked up here: explain
// shows the fake address shunt's DNS server gave it (from the table in
// state_dir) and decides the flow by the name; a resolve_through name is
// left to the far side.
func TestExplainSplitDNS(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	srv, err := dns.New(dns.Options{
		FakeRanges: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")},
		StateFile:  filepath.Join(state, engine.FakeIPFile),
		Policy:     dns.Policy{Hosts: []string{"mail.corp.example"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	fake := srv.Fake("mail.corp.example")[0]
	srv.Close()
	path := filepath.Join(dir, "shunt.yaml")
	os.WriteFile(path, []byte(`profiles:
  - name: office
    host: 192.0.2.22
    user: alice
dns:
  resolve_through:
    - domains: [corp.example]
      profile: office
      server: 10.1.0.53
state_dir: `+state+`
rules:
  - name: mail
    destinations: [mail.corp.example]
    action: tunnel
    profile: office
  - name: new
    destinations: [new.corp.example]
    action: block
`), 0o600)
	cfg, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	noLookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		t.Errorf("%s was looked up by the system's resolver", host)
		return nil, errors.New("no")
	}
	for _, tt := range []struct {
		dest string
		want []string
	}{
		{"mail.corp.example:993", []string{
			"dns: a rule names mail.corp.example, so shunt's DNS server answers it itself: it has the fake address " + fake.String(),
			"captured: mail.corp.example has the fake address " + fake.String(),
			`MATCH  rule #1 "mail"            destination mail.corp.example (fake ` + fake.String() + `) is mail.corp.example`,
			`tunnel (rule #1 "mail") through profile office: direct to alice@192.0.2.22:22; the channel is opened to mail.corp.example:993 by name, and the SSH server resolves it`,
		}},
		{"new.corp.example:80", []string{
			"gets a fake address from 198.18.0.0/15 or fd53:6875:6e74:fa6e::/64 at its first look-up",
			`block (rule #2 "new")`,
		}},
		{"wiki.corp.example:443", []string{
			"no flow: shunt's DNS server asks 10.1.0.53:53 for wiki.corp.example, through profile office",
		}},
	} {
		e, err := newExplanation(cfg, tt.dest, "", "", "", nil, noLookup)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		printExplanation(&out, e)
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tt.dest, w, out.String())
			}
		}
	}
}
