package engine

import (
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/router"
)

// The budget for the data flows hold buffered (flow_memory), and the
// sweep that enforces it (router.SweepMemory).
const (
	// sshChannelWindow is what the SSH server may send on a channel
	// before shunt reads: x/crypto/ssh's channelWindowSize, which it
	// neither exports nor lets us change.
	sshChannelWindow = 2 << 20
	// The default budget is an eighth of the machine's memory, within
	// these bounds: at 128 MiB some 40 stalled tunnelled flows fit (each
	// holds ~3 MiB), enough for a small machine's applications; above
	// 1 GiB, ~340 of them, stalled flows are a leak, not a workload, and
	// shunt should not take more of a large machine for them.
	flowMemoryShare = 8
	minFlowMemory   = 128 << 20
	maxFlowMemory   = 1 << 30
	// otherFlowMemory is the default where shunt does not read the
	// machine's memory (not Linux).
	otherFlowMemory = 512 << 20

	// memorySweepEvery spaces the sweeps: a stalled flow is found within
	// router.DefaultStallAfter and this. Each costs a pass over the open
	// flows (about a microsecond each).
	memorySweepEvery = 250 * time.Millisecond
	// When the buffered data falls by releaseDrop or more, and to half
	// its peak or less (many flows ended, or were reset), the memory it
	// took goes back to the system within seconds (debug.FreeOSMemory: a
	// collection and the release of the free pages): releaseDelay after
	// the fall, and again releaseEvery after that (see afterSweep).
	// Without it the heap stays: nothing allocates after a burst, so no
	// collection runs, and the runtime gives back only freed memory.
	releaseDrop  = 32 << 20
	releaseDelay = time.Second
	releaseEvery = 5 * time.Second
)

// FlowMemory is the budget for the data flows hold buffered that cfg asks
// for: flow_memory, or its default on this machine.
func FlowMemory(cfg *config.Config) int64 {
	budget, _ := flowMemory(cfg)
	return budget
}

// flowMemory is the budget cfg asks for, and where it came from.
func flowMemory(cfg *config.Config) (budget int64, why string) {
	total, ok := machineMemory()
	return budgetFor(cfg, total, ok)
}

// budgetFor is flowMemory on a machine with total bytes of memory (ok:
// known).
func budgetFor(cfg *config.Config, total int64, ok bool) (budget int64, why string) {
	if cfg.FlowMemory.Set {
		return cfg.FlowMemory.Bytes, "flow_memory"
	}
	if !ok {
		return otherFlowMemory, "default"
	}
	return min(max(total/flowMemoryShare, minFlowMemory), maxFlowMemory), "an eighth of the machine's memory, within 128MiB..1GiB"
}

// memoryOptions are the router's memory options for cfg.
func memoryOptions(cfg *config.Config) router.MemoryOptions {
	budget, _ := flowMemory(cfg)
	return router.MemoryOptions{Budget: budget, TunnelWindow: sshChannelWindow}
}

// memoryWatch sweeps the router's flows while the engine runs.
type memoryWatch struct {
	r    *router.Router
	log  logrus.FieldLogger
	stop chan struct{}
	done chan struct{}
	// last is the latest sweep's result, for the metrics.
	last atomic.Pointer[router.MemoryUse]

	// The sweeping goroutine's own.
	peak int64
	// due is when memory goes back to the system next (zero: not due);
	// again, that one more release follows it.
	due   time.Time
	again bool
	// release returns memory to the system (debug.FreeOSMemory); a test
	// hook.
	release func()
}

func newMemoryWatch(r *router.Router, log logrus.FieldLogger) *memoryWatch {
	return &memoryWatch{r: r, log: log, stop: make(chan struct{}), done: make(chan struct{}), release: debug.FreeOSMemory}
}

// run sweeps until stop is closed.
func (w *memoryWatch) run() {
	defer close(w.done)
	t := time.NewTicker(memorySweepEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			w.sweep(now)
		}
	}
}

// sweep runs one sweep, and returns memory to the system after a fall.
func (w *memoryWatch) sweep(now time.Time) {
	use := w.r.SweepMemory(now)
	w.last.Store(&use)
	w.afterSweep(use, now)
}

// afterSweep returns memory to the system when the buffered data fell a
// lot since its peak: once releaseDelay after the fall, when the flows
// that ended have let go of what they held (an SSH channel's buffer until
// the server confirms its close, the stack's endpoint until its reset is
// processed), and once more releaseEvery later, for what was still
// held then. A further fall within that time is taken in by the second.
func (w *memoryWatch) afterSweep(use router.MemoryUse, now time.Time) {
	w.peak = max(w.peak, use.Buffered)
	if w.peak-use.Buffered >= releaseDrop && use.Buffered <= w.peak/2 {
		if w.due.IsZero() {
			w.due, w.again = now.Add(releaseDelay), true
		}
		w.peak = use.Buffered
	}
	if w.due.IsZero() || now.Before(w.due) {
		return
	}
	start := time.Now()
	w.release()
	w.log.WithFields(logrus.Fields{"buffered": use.Buffered, "took": time.Since(start).Round(time.Millisecond).String()}).
		Debug("flows' buffered data fell: memory returned to the system")
	w.due = time.Time{}
	if w.again {
		w.due, w.again = now.Add(releaseEvery), false
	}
}

// close stops the sweeps and waits for the last to end; nil does nothing.
func (w *memoryWatch) close() {
	if w == nil {
		return
	}
	close(w.stop)
	<-w.done
}

// use is the latest sweep's result (the zero value before the first).
func (w *memoryWatch) use() router.MemoryUse {
	if w == nil {
		return router.MemoryUse{}
	}
	if u := w.last.Load(); u != nil {
		return *u
	}
	return router.MemoryUse{}
}

// startMemory starts the sweeps, and says what the budget is.
func (e *Engine) startMemory(cfg *config.Config) {
	budget, why := flowMemory(cfg)
	e.log.WithFields(logrus.Fields{"flow_memory": router.FormatBytes(budget), "from": why}).
		Info("flows' buffered data is bounded: over the budget, the flows whose applications stopped reading longest are reset")
	e.memoryStarted = true
	go e.memory.run()
}

// reloadMemory puts a changed budget in force; flows over it are reset at
// the next sweep.
func (e *Engine) reloadMemory(old, cfg *config.Config) {
	was, _ := flowMemory(old)
	budget, why := flowMemory(cfg)
	if budget == was {
		return
	}
	e.router.SetMemoryBudget(budget)
	e.log.WithFields(logrus.Fields{"flow_memory": router.FormatBytes(budget), "was": router.FormatBytes(was), "from": why}).
		Info("flow memory budget changed")
}

// memorySource gives the metrics the latest sweep's figures.
type memorySource struct{ w *memoryWatch }

func (s memorySource) FlowMemory() metrics.FlowMemory {
	u := s.w.use()
	// The budget in force, also before the first sweep after a reload.
	return metrics.FlowMemory{Budget: s.w.r.MemoryBudget(), Buffered: u.Buffered, Stalled: u.Stalled, Reset: u.Reset}
}

var _ metrics.Memory = memorySource{}
