package broker

import (
	"testing"
	"time"
)

// The keepalive's silence counts only the time shunt watched: a pause of
// shunt's own (SIGSTOP, the machine asleep) adds at most one step, however
// long it was, and is reported; a byte resets the count.
func TestSilenceCountsOnlyWatchedTime(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const step = time.Second
	m := newSilence(t0, t0.UnixNano(), step)
	steps := []struct {
		now      time.Duration
		lastRead time.Duration // since t0
		silent   time.Duration
		resumed  bool
	}{
		{250 * time.Millisecond, 0, 250 * time.Millisecond, false},
		{500 * time.Millisecond, 0, 500 * time.Millisecond, false},
		// A minute shunt did not run: one step of it counts.
		{60500 * time.Millisecond, 0, 1500 * time.Millisecond, true},
		{60750 * time.Millisecond, 0, 1750 * time.Millisecond, false},
		// The server answered 100 ms ago.
		{61 * time.Second, 60900 * time.Millisecond, 100 * time.Millisecond, false},
		{61250 * time.Millisecond, 60900 * time.Millisecond, 350 * time.Millisecond, false},
		// A byte just before another pause: the pause counts one step.
		{90 * time.Second, 61300 * time.Millisecond, step, true},
		// Steady silence adds up to the bound as before.
		{90250 * time.Millisecond, 61300 * time.Millisecond, step + 250*time.Millisecond, false},
		{91 * time.Second, 61300 * time.Millisecond, 2 * step, false},
		{92 * time.Second, 61300 * time.Millisecond, 3 * step, false},
	}
	for i, s := range steps {
		silent, resumed := m.observe(at(s.now), at(s.lastRead).UnixNano())
		if silent != s.silent || resumed != s.resumed {
			t.Fatalf("step %d (at %v): silent %v, resumed %v; want %v, %v", i, s.now, silent, resumed, s.silent, s.resumed)
		}
	}
}
