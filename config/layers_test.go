package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	os.WriteFile(p, []byte(content), 0o600)
	return p
}

func TestLayers(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", `profiles:
  - name: office
    host: gw.corp.example
    host_key_policy: strict
rules:
  - name: corp
    destinations: [10.0.0.0/8]
    action: tunnel
    profile: office
always_direct_applications: [ssh]
`)
	user := write(t, dir, "user.yaml", `profiles:
  - name: office
    host: gw2.corp.example
    host_key_policy: accept-new
  - name: home
    host: home.example
rules:
  - action: block
always_direct_applications: [backup]
tun:
  mtu: 9000
`)
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Rules) != 1 || l.Rules[0].Name != "corp" {
		t.Errorf("rules = %+v, want the global file's", l.Rules)
	}
	office, _ := l.Profile("office")
	if office.Host[0] != "gw2.corp.example" || office.HostKeyPolicy != "strict" {
		t.Errorf("office = host %v policy %q: want the user's host and the global, stricter policy", office.Host, office.HostKeyPolicy)
	}
	if _, ok := l.Profile("home"); !ok {
		t.Error("the user's own profile is missing")
	}
	if strings.Join(l.AlwaysDirectApplications, ",") != "ssh,backup" || l.TUN.MTU != 9000 {
		t.Errorf("always direct %v, mtu %d", l.AlwaysDirectApplications, l.TUN.MTU)
	}
	notes := strings.Join(l.Notes, "\n")
	for _, want := range []string{"rules of " + user + " are ignored", "keeping host_key_policy strict of " + global} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	if d := diff([]Layer{{Role: "global", Path: global, Found: true}, {Role: "user", Path: user, Found: true}}, l.Layers); d != "" {
		t.Errorf("layers (-want +got):\n%s", d)
	}
}

func TestLayersWithoutGlobalRules(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	user := write(t, dir, "user.yaml", "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: block\n")
	extra := write(t, dir, "extra.yaml", "rules:\n  - name: mine\n    action: tunnel\n    profile: p\n")
	l, err := LoadLayers(Layers{Global: filepath.Join(dir, "absent.yaml"), User: user, Extra: []string{extra}, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Rules) != 1 || l.Rules[0].Name != "mine" {
		t.Errorf("rules = %+v, want --config's", l.Rules)
	}
	if l.Layers[0].Found {
		t.Error("the absent global file is marked found")
	}
}

// A broken layer stops everything, naming its own file and line, even when
// the error is about a reference into another layer.
func TestLayerErrorsNameTheirFile(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", "profiles:\n  - name: p\n    host: gw\n")
	user := write(t, dir, "user.yaml", "rules:\n  - action: tunnel\n    profile: q\n")
	_, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err == nil || !strings.Contains(err.Error(), user+":2: rule #1: unknown profile \"q\"") {
		t.Fatalf("err = %v", err)
	}
	bad := write(t, dir, "bad.yaml", "rules: [\n")
	if _, err := LoadLayers(Layers{Global: global, User: bad, Options: e.opts()}); err == nil || !strings.Contains(err.Error(), bad+":") {
		t.Fatalf("syntax error in a layer: %v", err)
	}
	if _, err := LoadLayers(Layers{Global: global, Extra: []string{filepath.Join(dir, "missing.yaml")}, Options: e.opts()}); err == nil {
		t.Fatal("a missing --config file was accepted")
	}
}

// A replacing profile without a policy, even one filled from ssh_config,
// keeps the replaced profile's stricter one; a name twice in one file is an
// error.
func TestLayerPolicyAndDuplicates(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	sshcfg := write(t, dir, "ssh_config", "Host gw\n  StrictHostKeyChecking no\n")
	global := write(t, dir, "global.yaml", "profiles:\n  - name: corp\n    host: gw\n    host_key_policy: strict\n")
	user := write(t, dir, "user.yaml", "profiles:\n  - name: corp\n    ssh_config: gw\n")
	opts := e.opts()
	opts.SSHConfigFiles = []string{sshcfg}
	l, err := LoadLayers(Layers{Global: global, User: user, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Profile("corp"); p.HostKeyPolicy != "strict" {
		t.Errorf("policy = %q, want strict kept", p.HostKeyPolicy)
	}
	dup := write(t, dir, "dup.yaml", "profiles:\n  - name: a\n    host: x\n  - name: a\n    host: y\n")
	if _, err := LoadLayers(Layers{Extra: []string{dup}, Options: e.opts()}); err == nil || !strings.Contains(err.Error(), dup+":4: profile \"a\" is defined twice") {
		t.Errorf("duplicate: %v", err)
	}
}
