package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestView(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", `profiles:
  - name: office
    host: gw.corp.example
`)
	user := write(t, dir, "user.yaml", `# mine
profiles:
  - name: home
    host: home.example
    port: 2222
rules:
  - name: corp   # the office
    destinations: [10.0.0.0/8]
    ports: [22, "993-995"]
    action: tunnel
    profile: office
  - action: block
`)
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.View()
	if err != nil {
		t.Fatal(err)
	}
	if v.Rules.File != user || !v.Rules.Editable || len(v.Rules.Items) != 2 {
		t.Fatalf("rules = %+v", v.Rules)
	}
	b, _ := json.Marshal(v)
	for _, w := range []string{
		`"items":[{"action":"tunnel","destinations":["10.0.0.0/8"],"name":"corp","ports":[22,"993-995"],"profile":"office"},{"action":"block"}]`,
		`{"file":"` + global + `","editable":false,"why_not":"the global file ` + global + ` holds the profile`,
		`{"file":"` + user + `","editable":true,"profile":{"host":"home.example","name":"home","port":2222}}`,
		`"layers":[{"role":"global","path":"` + global + `","found":true},{"role":"user"`,
		`"shadowed":[]`,
	} {
		if !strings.Contains(string(b), w) {
			t.Errorf("view lacks %s:\n%s", w, b)
		}
	}

	// The global file's rules win over every other file's: not editable.
	global = write(t, dir, "global.yaml", `profiles:
  - name: office
    host: gw.corp.example
rules:
  - action: direct
`)
	l, err = LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = l.View(); err != nil {
		t.Fatal(err)
	}
	if v.Rules.File != global || v.Rules.Editable || !strings.Contains(v.Rules.WhyNot, "owns the rules") || len(v.Rules.Items) != 1 {
		t.Errorf("global rules: %+v", v.Rules)
	}

	// No rules anywhere: a first one goes to the last file read.
	only := write(t, dir, "norules.yaml", "profiles:\n  - name: x\n    host: x.example\n")
	l, err = LoadLayers(Layers{Extra: []string{only}, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if v, err = l.View(); err != nil {
		t.Fatal(err)
	}
	if v.Rules.File != only || !v.Rules.Editable || v.Rules.Items == nil {
		t.Errorf("no rules: %+v", v.Rules)
	}
}

// Layers.Contents is read in place of a file: errors name that file and
// the line of the contents given, and nothing is read from the disk for
// it (a file that does not exist yet included).
func TestLayersContents(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	user := write(t, dir, "user.yaml", "rules:\n  - action: direct\n")
	extra := filepath.Join(dir, "new.yaml")
	l, err := LoadLayers(Layers{User: user, Extra: []string{extra}, Options: e.opts(), Contents: map[string][]byte{
		user:  []byte("# edited\nrules:\n  - action: block\n"),
		extra: []byte("log:\n  level: debug\n"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if l.Rules[0].Action != "block" || l.Rules[0].Line != 3 || l.Log.Level != "debug" || !l.Layers[1].Found {
		t.Errorf("rules %+v, log %+v, layers %+v", l.Rules, l.Log, l.Layers)
	}
	_, err = LoadLayers(Layers{User: user, Options: e.opts(), Contents: map[string][]byte{user: []byte("rules:\n  - action: tunnel\n")}})
	if err == nil || !strings.Contains(err.Error(), user+":2: rule #1 tunnels but names no profile") {
		t.Errorf("error %v", err)
	}
	if b, _ := os.ReadFile(user); string(b) != "rules:\n  - action: direct\n" {
		t.Errorf("the file changed: %q", b)
	}
}

// The version of the files changes with any of them, their absence too.
func TestReadFilesVersion(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	layers := []Layer{{Role: "user", Path: a}, {Role: "config", Path: b}}
	version := func() string {
		t.Helper()
		f, err := ReadFiles(layers)
		if err != nil {
			t.Fatal(err)
		}
		return f.Version
	}
	seen := map[string]bool{}
	for i, step := range []func(){
		func() {},
		func() { os.WriteFile(a, nil, 0o600) },
		func() { os.WriteFile(a, []byte("x"), 0o600) },
		func() { os.WriteFile(b, []byte("x"), 0o600) },
		func() { os.WriteFile(a, nil, 0o600) },
		func() { os.Remove(a) },
	} {
		step()
		v := version()
		if seen[v] || v != version() {
			t.Errorf("step %d: version %s seen before, or not stable", i, v)
		}
		seen[v] = true
	}
}
