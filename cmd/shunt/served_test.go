package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/engine/enginetest"
	"github.com/shunt-dev/shunt/tun"
)

// servedEngine is an engine made (not started) on explainConfig, served
// as the control socket serves it.
func servedEngine(t *testing.T, extra string) (*served, *config.Loaded) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(strings.Replace(explainConfig, "always_direct_applications", extra+"always_direct_applications", 1)), 0o600)
	l, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.Out = io.Discard
	e, err := engine.New(l.Config, engine.Deps{Device: tun.NewMemory(1500, 8), Capture: &enginetest.Capture{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s := &served{Backend: e.Control(), eng: e, log: log}
	s.loaded.Store(l)
	return s, l
}

// The control API's explain is shunt explain's, by construction: the
// same JSON for the same flow.
func TestServedExplainIsShuntExplain(t *testing.T) {
	s, l := servedEngine(t, "")
	for _, req := range []control.ExplainRequest{
		{Destination: "10.1.0.7:993", User: "0"},
		{Destination: "10.2.3.4:22", Application: "/usr/bin/mutt"},
		{Destination: "192.0.2.1:80"},
	} {
		got, err := s.Explain(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newExplanation(l, req.Destination, req.Application, req.User, req.From, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%+v:\n control API %s\n shunt explain %s", req, g, w)
		}
	}
	if _, err := s.Explain(context.Background(), control.ExplainRequest{Destination: "10.1.0.7:port"}); err == nil {
		t.Error("a bad port explained")
	}
}

func TestServedConfigView(t *testing.T) {
	s, _ := servedEngine(t, `  - name: never
    destinations: [10.1.0.5]
    ports: [110]
    action: direct
`)
	v, err := s.ConfigView()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	for _, w := range []string{`"editable":true`, `"name":"no-plain-pop"`, `"shadowed":[{"index":4,"by":0,"message":"`} {
		if !strings.Contains(string(b), w) {
			t.Errorf("config view lacks %s:\n%s", w, b)
		}
	}
	// Without its files (a test's shunt), the API says so.
	if _, err := (&served{}).ConfigView(); err == nil {
		t.Error("a served without files has a config view")
	}
}

// A save through the control API, as the console sends it, writes the
// file (comments kept) and puts it in force through the served engine's
// reload; a check judges it as shunt check does.
func TestServedSaveRules(t *testing.T) {
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(known, nil, 0o600)
	path := filepath.Join(dir, "shunt.yaml")
	before := `profiles:
  - name: office
    host: gw.corp.example
    user: alice
    known_hosts: ` + known + `
    host_key_policy: accept-new
rules:
  # mail first
  - name: mail
    destinations: [10.1.0.0/24]
    action: tunnel
    profile: office
  - name: rest   # the others
    destinations: [10.0.0.0/8]
    action: direct
`
	os.WriteFile(path, []byte(before), 0o600)
	layers := config.Layers{Extra: []string{path}}
	l, err := config.LoadLayers(layers)
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.Out = io.Discard
	s := &served{log: log, layers: layers, sys: &notifier{log: log, notify: func(string) (bool, error) { return false, nil }}}
	s.loaded.Store(l)
	e, err := engine.New(l.Config, engine.Deps{Device: tun.NewMemory(1500, 8), Capture: &enginetest.Capture{}, Log: log,
		Load: func() (*config.Config, error) {
			l, err := config.LoadLayers(layers)
			if err != nil {
				return nil, err
			}
			s.next = l
			return l.Config, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s.Backend, s.eng = e.Control(), e
	h := control.NewHandler(s, log)
	do := func(method, p, body string) (int, map[string]any) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, p, strings.NewReader(body)))
		var out map[string]any
		json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}

	// shunt check's judgement: a rule the one before shadows.
	code, res := do("POST", "/v1/config/check", `{"rules":[{"keep":1},{"keep":0}]}`)
	if code != 200 || res["ok"] != true || !strings.Contains(fmt.Sprint(res["shadowed"]), `by:0`) {
		t.Fatalf("check: %d %v", code, res)
	}
	code, v := do("GET", "/v1/config", "")
	code, res = do("PUT", "/v1/config/rules", `{"version":"`+v["version"].(string)+`","rules":[{"keep":1},{"keep":0}]}`)
	if code != 200 || res["saved"] != true {
		t.Fatalf("save: %d %v", code, res)
	}
	want := "profiles:" + strings.SplitN(before, "rules:\n", 2)[0][len("profiles:"):] + `rules:
  - name: rest   # the others
    destinations: [10.0.0.0/8]
    action: direct
  # mail first
  - name: mail
    destinations: [10.1.0.0/24]
    action: tunnel
    profile: office
`
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Errorf("the file:\n%s\nwant:\n%s", b, want)
	}
	if r := e.Plan().Rules; r[0].Name != "rest" || s.loaded.Load().Rules[0].Name != "rest" {
		t.Errorf("in force: %q, loaded %q", r[0].Name, s.loaded.Load().Rules[0].Name)
	}
}
