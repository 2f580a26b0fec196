package engine

import (
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/router"
)

func TestFlowMemoryDefault(t *testing.T) {
	set := &config.Config{FlowMemory: config.ByteSize{Bytes: 64 << 20, Set: true}}
	for _, tc := range []struct {
		cfg   *config.Config
		total int64
		known bool
		want  int64
	}{
		{set, 16 << 30, true, 64 << 20},
		{&config.Config{}, 4 << 30, true, 512 << 20}, // an eighth
		{&config.Config{}, 512 << 20, true, minFlowMemory},
		{&config.Config{}, 64 << 30, true, maxFlowMemory},
		{&config.Config{}, 0, false, otherFlowMemory},
	} {
		if got, why := budgetFor(tc.cfg, tc.total, tc.known); got != tc.want || why == "" {
			t.Errorf("budget with flow_memory %+v on %d bytes (known %v) = %d (%q), want %d", tc.cfg.FlowMemory, tc.total, tc.known, got, why, tc.want)
		}
	}
	if total, ok := machineMemory(); ok && total < 64<<20 {
		t.Errorf("machineMemory() = %d: not this machine's", total)
	}
}

// Memory goes back to the system after a large fall of the buffered
// data, not after small ones: releaseDelay after the fall and once more
// releaseEvery later.
func TestMemoryRelease(t *testing.T) {
	log, _ := test.NewNullLogger()
	w := newMemoryWatch(router.New(nil, router.Options{Log: log}), log)
	released := 0
	w.release = func() { released++ }
	t0 := time.Now()
	fell := 3 * time.Second
	for i, s := range []struct {
		buffered int64
		at       time.Duration
		want     int
	}{
		{10 << 20, 0, 0},
		{200 << 20, time.Second, 0},
		{180 << 20, 2 * time.Second, 0}, // a small fall
		{90 << 20, fell, 0},             // half the peak, 110 MiB less
		{90 << 20, fell + releaseDelay/2, 0},
		{90 << 20, fell + releaseDelay, 1},
		{20 << 20, fell + 2*releaseDelay, 1}, // a further fall: the second release takes it in
		{20 << 20, fell + releaseDelay + releaseEvery, 2},
		{20 << 20, fell + releaseDelay + 3*releaseEvery, 2}, // nothing more
		{10 << 20, fell + 4*releaseEvery, 2},                // 10 MiB less: too little
		{300 << 20, fell + 5*releaseEvery, 2},               // a new peak
		{10 << 20, fell + 6*releaseEvery, 2},
		{10 << 20, fell + 6*releaseEvery + releaseDelay, 3},
	} {
		w.afterSweep(router.MemoryUse{Buffered: s.buffered}, t0.Add(s.at))
		if released != s.want {
			t.Errorf("step %d: %d MiB buffered at +%v: %d releases, want %d", i, s.buffered>>20, s.at, released, s.want)
		}
	}
}
