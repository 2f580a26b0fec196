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
	// took goes back to the system at once (debug.FreeOSMemory: a
	// collection and the release of the free pages), at most every
	// releaseEvery. Without it the Go runtime gives it back over minutes.
	releaseDrop  = 32 << 20
	releaseEvery = 5 * time.Second
)

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
	peak        int64
	lastRelease time.Time
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
// lot since its peak.
func (w *memoryWatch) afterSweep(use router.MemoryUse, now time.Time) {
	w.peak = max(w.peak, use.Buffered)
	if w.peak-use.Buffered < releaseDrop || use.Buffered > w.peak/2 || now.Sub(w.lastRelease) < releaseEvery {
		return
	}
	start := time.Now()
	w.release()
	w.log.WithFields(logrus.Fields{"buffered_peak": w.peak, "buffered": use.Buffered, "took": time.Since(start).Round(time.Millisecond).String()}).
		Debug("flows' buffered data fell: memory returned to the system")
	w.peak, w.lastRelease = use.Buffered, now
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
