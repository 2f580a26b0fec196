package config

import (
	"encoding/json"
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
