package main

import (
	"context"
	"encoding/json"
	"io"
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
