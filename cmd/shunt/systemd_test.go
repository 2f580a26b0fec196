package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
)

// sent records what a notifier tells systemd.
type sent struct {
	mu     sync.Mutex
	states []string
}

func (s *sent) notify(state string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, state)
	return true, nil
}

func (s *sent) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.states...)
}

// A reload is RELOADING=1, with the monotonic time systemd ≥ 253 wants,
// then READY=1, whether it succeeds or is refused; a refused one logs
// every problem at its file and line.
func TestServedReloadTellsSystemd(t *testing.T) {
	var logs bytes.Buffer
	log := logrus.New()
	log.Out = &logs
	rec := &sent{}
	be := &controltest.Backend{}
	s := &served{Backend: be, sys: &notifier{log: log, notify: rec.notify}, log: log}
	if err := s.Reload(context.Background(), control.ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 || !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(got[0]) || got[1] != "READY=1" {
		t.Errorf("told systemd %q, want RELOADING=1 with MONOTONIC_USEC, then READY=1", got)
	}
	be.SetErrors(controltest.Errors{Reload: errors.Join(
		&config.Error{File: "shunt.yaml", Line: 3, Msg: "rule #1: unknown action"},
		&config.Error{File: "shunt.yaml", Line: 9, Msg: "unknown key"},
	)})
	if err := s.Reload(context.Background(), control.ReloadOptions{}); err == nil {
		t.Fatal("a refused reload returned no error")
	}
	if got := rec.all(); len(got) != 4 || got[3] != "READY=1" {
		t.Errorf("after a refused reload told systemd %q, want READY=1 last", got)
	}
	for _, want := range []string{"the old one stays in force", "shunt.yaml:3: rule #1: unknown action", "shunt.yaml:9: unknown key"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

// The watchdog is pinged only while the packet path is alive.
func TestWatchdogPingsWhileAlive(t *testing.T) {
	log := logrus.New()
	log.Out = &bytes.Buffer{}
	rec := &sent{}
	n := &notifier{log: log, notify: rec.notify}
	var mu sync.Mutex
	alive := true
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		n.watchdog(2*time.Millisecond, func() bool { mu.Lock(); defer mu.Unlock(); return alive }, done)
		close(finished)
	}()
	for deadline := time.Now().Add(20 * time.Second); len(rec.all()) < 3; {
		if time.Now().After(deadline) {
			t.Fatal("no watchdog pings")
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	alive = false
	mu.Unlock()
	// A tick in flight may still ping once; after that, none.
	time.Sleep(20 * time.Millisecond)
	before := len(rec.all())
	time.Sleep(50 * time.Millisecond)
	if after := len(rec.all()); after != before {
		t.Errorf("%d pings while the packet path was down", after-before)
	}
	close(done)
	<-finished
	for _, s := range rec.all() {
		if s != "WATCHDOG=1" {
			t.Errorf("told systemd %q", s)
		}
	}
	// Without WatchdogSec it returns at once.
	n.watchdog(0, func() bool { return true }, nil)
}

// log.format json logs JSON objects with the flow fields as keys.
func TestNewLoggerFormat(t *testing.T) {
	var b bytes.Buffer
	log := newLogger(&b, config.Log{Level: "info", Format: config.LogJSON})
	log.WithFields(logrus.Fields{"flow": 7, "rule": "#1", "profile": "gw"}).Info("flow open")
	if s := b.String(); !strings.HasPrefix(s, "{") || !strings.Contains(s, `"flow":7`) || !strings.Contains(s, `"profile":"gw"`) || !strings.Contains(s, `"msg":"flow open"`) {
		t.Errorf("json log line %q", s)
	}
	b.Reset()
	newLogger(&b, config.Log{Level: "info", Format: config.LogText}).Info("hello")
	if s := b.String(); strings.HasPrefix(s, "{") || !strings.Contains(s, `msg=hello`) {
		t.Errorf("text log line %q", s)
	}
}
