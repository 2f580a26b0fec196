package engine

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestJumpDetector(t *testing.T) {
	t0 := time.Now()
	j := jumpDetector{limit: 5 * time.Second}
	if _, jumped := j.observe(t0); jumped {
		t.Fatal("the first observation is a jump")
	}
	steps := []struct {
		next   time.Time
		jumped bool
	}{
		{t0.Add(time.Second), false},
		{t0.Add(2 * time.Second), false},
		// Stopped for 20 s: the monotonic clock moved.
		{t0.Add(22 * time.Second), true},
		{t0.Add(23 * time.Second), false},
		// Asleep: the monotonic clock stood still, the wall clock went
		// on; a time without a monotonic reading (Round(0)) is compared
		// on the wall clock only.
		{t0.Add(24 * time.Second).Round(0).Add(time.Minute), true},
		{t0.Add(24 * time.Second).Round(0).Add(time.Minute + time.Second), false},
		// The wall clock set back: no jump forward.
		{t0.Add(24 * time.Second).Round(0), false},
	}
	for i, s := range steps {
		if gap, jumped := j.observe(s.next); jumped != s.jumped {
			t.Errorf("step %d: gap %v, jumped %v; want %v", i, gap, jumped, s.jumped)
		}
	}
}

// A tick long after the last asks for one check, whose reason says so;
// ticks on time ask for none.
func TestWatchClock(t *testing.T) {
	var (
		mu     sync.Mutex
		now    = time.Now()
		checks = make(chan string, 4)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	var logs bytes.Buffer
	log := logrus.New()
	log.Out = &logs
	w := &netWatch{check: func(why string) int { checks <- why; return 1 }, log: log, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	tick := make(chan time.Time)
	w.wg.Add(2)
	go w.checks()
	go func() { defer w.wg.Done(); w.watchClock(tick, clock) }()
	for range 3 {
		advance(time.Second)
		tick <- time.Time{}
	}
	advance(20 * time.Second)
	tick <- time.Time{}
	why := <-checks
	if !strings.Contains(why, "clock jump of 20s") {
		t.Errorf("reason %q", why)
	}
	advance(time.Second)
	tick <- time.Time{}
	w.stop()
	w.wait()
	select {
	case why := <-checks:
		t.Errorf("a second check (%q) for ticks on time", why)
	default:
	}
	if !strings.Contains(logs.String(), "the clock jumped") {
		t.Errorf("log %q: want the jump said", logs.String())
	}
}

// Requests made while a check runs are gathered into one more check.
func TestNetWatchGathers(t *testing.T) {
	started, release := make(chan string), make(chan struct{})
	w := &netWatch{check: func(why string) int { started <- why; <-release; return 0 }, log: logrus.New(), kick: make(chan struct{}, 1), quit: make(chan struct{})}
	w.wg.Add(1)
	go w.checks()
	w.request("a")
	if why := <-started; why != "a" {
		t.Fatalf("first check %q", why)
	}
	w.request("b")
	w.request("c")
	release <- struct{}{}
	if why := <-started; why != "b; c" {
		t.Errorf("second check %q, want both reasons", why)
	}
	release <- struct{}{}
	w.stop()
	w.wait()
}
