package router

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Memory: a flow whose application stops reading while its far side sends
// fills every buffer on the way: the SSH channel's window (the server may
// send that much before shunt reads it), the stack's send queue toward the
// application, and the splice's chunk. A few hundred such flows hold a
// gigabyte. SweepMemory, called periodically, finds those flows, cuts the
// stack's buffers of each (Buffers) until it drains, and, when the data
// they hold passes the budget, resets the flows stalled longest.

// Buffers is implemented by connections that hold a flow's data in
// buffers of their own and can shrink them (netstack's flows: gVisor's
// send and receive queues).
type Buffers interface {
	// Buffered is what the buffers hold, as an upper estimate: send is
	// the send buffer's size (a writer blocks only once it is full; while
	// a cut is in force, the size before it, which the queue may still
	// hold), receive the bytes received and not read yet.
	Buffered() (send, receive int64)
	// ShrinkSend cuts the send buffer to a small size (true), or puts
	// back the size it had (false): a writer toward an application that
	// does not read then queues little more.
	ShrinkSend(cut bool)
	// ShrinkReceive does so for the receive buffer: the application's
	// data then waits on its side, not in shunt.
	ShrinkReceive(cut bool)
}

// MemoryOptions bound the data the flows hold buffered.
type MemoryOptions struct {
	// Budget bounds the estimate of buffered data (see SweepMemory);
	// over it, the flows stalled longest are reset. 0: no bound.
	// SetMemoryBudget changes it while flows run.
	Budget int64
	// TunnelWindow is what a tunnelled flow's upstream may hold for it
	// while the flow does not drain (the SSH channel's window).
	TunnelWindow int64
	// StallAfter is how long a write may make no progress before the
	// flow counts as stalled: its buffers are cut, and it may be reset
	// when over the budget. Zero: DefaultStallAfter.
	StallAfter time.Duration
	// ResetAfter is how long a flow must have been stalled before it
	// may be reset over the budget. Zero: DefaultResetAfter.
	ResetAfter time.Duration
}

// DefaultResetAfter is MemoryOptions.ResetAfter's default. A stalled
// write is not proof that the application stopped reading: under heavy
// load (1,000 busy flows on 2 cores, ~100 KB/s each) a write toward an
// application that reads slowly stays in progress for seconds, since
// the stack wakes the writer only once half its send buffer is free.
// Only a flow whose application took nothing for this long is reset; the
// cut buffers bound what the others add meanwhile. Past UrgentOver times
// the budget, the flows stalled longest go at once (stalled for
// StallAfter): busy flows, even 1,000 of them, hold less than that.
const DefaultResetAfter = 30 * time.Second

// UrgentOver is how many times the budget the estimate must pass for
// stalled flows to be reset without waiting for ResetAfter.
const UrgentOver = 4

// DefaultStallAfter is MemoryOptions.StallAfter's default. A 64 KiB write
// to an application that reads, even slowly, returns well within it
// (the stack takes more once half its send buffer is free); one that has
// not is waiting on an application that has stopped reading, and the
// flow's buffers are full by then.
const DefaultStallAfter = 500 * time.Millisecond

// minResetFrees is the least a flow reset over the budget must hold.
const minResetFrees = 2 * spliceBufSize

// memoryLogEvery spaces the warnings about flows reset over the budget.
const memoryLogEvery = 10 * time.Second

// MemoryUse is what SweepMemory found.
type MemoryUse struct {
	// Budget in force; 0: none.
	Budget int64
	// Buffered is the estimate of the data the open flows hold, after any
	// resets of this sweep.
	Buffered int64
	// Flows are the open flows; Stalled those of them that did not drain
	// for StallAfter (after the resets).
	Flows, Stalled int
	// Reset counts the flows reset over the budget since the router
	// started; ResetNow those of this sweep.
	Reset, ResetNow int64
}

// flowMem is a flow's state between sweeps, guarded by memory.mu.
type flowMem struct {
	buf                Buffers // nil: the connection has none of its own
	seen               bool    // buf was looked up
	writesAB, writesBA uint64  // at the last sweep
	// sinceAB and sinceBA are when the write in progress each way was
	// first seen; zero when none was.
	sinceAB, sinceBA time.Time
	cutSend, cutRecv bool
	estimate         int64
	stalledSince     time.Time // the older stalled direction's; zero: not stalled
}

// memory is the router's accounting.
type memory struct {
	mu      sync.Mutex // one sweep at a time
	budget  atomic.Int64
	window  int64
	stall   time.Duration
	resetAt time.Duration // ResetAfter
	resets  atomic.Int64
	scratch []*flowEntry

	// Resets not warned about yet, and when the last warning was.
	unwarned int64
	warned   time.Time
}

func (m *memory) init(o MemoryOptions) {
	m.budget.Store(o.Budget)
	m.window = o.TunnelWindow
	m.stall = cmp.Or(o.StallAfter, DefaultStallAfter)
	m.resetAt = cmp.Or(o.ResetAfter, DefaultResetAfter)
}

// SetMemoryBudget changes the budget (0: none); the next sweep enforces it.
func (r *Router) SetMemoryBudget(b int64) { r.mem.budget.Store(b) }

// SweepMemory looks at every open flow: it estimates what each holds
// buffered, cuts the buffers of those that stalled (a write toward the
// application, or toward the far side, in progress and unchanged for
// StallAfter) and puts them back once they drain, and, when the estimate
// passes the budget, resets the flows stalled longest (for ResetAfter at
// least, unless the estimate is past UrgentOver times the budget) until
// it is under
// it again (their applications get a RST, their channels are closed).
// now is the time of the sweep; calls are meant some hundreds of
// milliseconds apart.
//
// The estimate of a flow is an upper one where it cannot be known: while
// a write toward the application is in progress, the stack's send buffer
// is full, the splice holds its chunk, and a tunnel's channel may hold
// its whole window; the receive queue is known exactly. A flow whose
// writes return holds little for long, and counts none of that.
func (r *Router) SweepMemory(now time.Time) MemoryUse {
	m := &r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &r.table
	t.mu.Lock()
	flows := m.scratch[:0]
	for fe := t.head; fe != nil; fe = fe.next {
		if fe.open.Load() {
			flows = append(flows, fe)
		}
	}
	t.mu.Unlock()
	use := MemoryUse{Budget: m.budget.Load(), Flows: len(flows)}
	var stalled []*flowEntry
	for _, fe := range flows {
		r.sweepFlow(fe, now)
		use.Buffered += fe.mem.estimate
		if !fe.mem.stalledSince.IsZero() {
			stalled = append(stalled, fe)
		}
	}
	if use.Budget > 0 && use.Buffered > use.Budget && len(stalled) > 0 {
		wait := m.resetAt
		if use.Buffered > UrgentOver*use.Budget {
			wait = 0
		}
		slices.SortStableFunc(stalled, func(a, b *flowEntry) int {
			return a.mem.stalledSince.Compare(b.mem.stalledSince)
		})
		for _, fe := range stalled {
			if use.Buffered <= use.Budget || now.Sub(fe.mem.stalledSince) < wait {
				// Sorted oldest first: the rest stalled later still.
				break
			}
			if fe.mem.estimate < minResetFrees {
				// Stalled toward the far side with little queued:
				// resetting it would free next to nothing.
				continue
			}
			if fe.resetFor(reasonMemory) {
				use.Buffered -= fe.mem.estimate
				fe.mem.stalledSince = time.Time{}
				use.ResetNow++
			}
		}
	}
	r.warnMemory(use, now)
	for _, fe := range stalled {
		if !fe.mem.stalledSince.IsZero() {
			use.Stalled++
		}
	}
	use.Reset = m.resets.Add(use.ResetNow)
	// Let go of the flows: the scratch slice is kept for the next sweep.
	clear(flows)
	m.scratch = flows[:0]
	return use
}

// sweepFlow updates fe's stall state and estimate, and cuts or restores
// its buffers.
func (r *Router) sweepFlow(fe *flowEntry, now time.Time) {
	fm := &fe.mem
	if !fm.seen {
		fm.seen = true
		fe.mu.Lock()
		fm.buf, _ = fe.down.(Buffers)
		fe.mu.Unlock()
	}
	stall := r.mem.stall
	// progress updates one direction: since is set when a write is first
	// seen in progress, and cleared when none is.
	progress := func(writes uint64, last *uint64, since *time.Time) (busy, stalled bool) {
		busy = writes%2 == 1
		switch {
		case !busy:
			*since = time.Time{}
		case writes != *last || since.IsZero():
			*since = now
		}
		*last = writes
		return busy, busy && now.Sub(*since) >= stall
	}
	busyBA, stalledBA := progress(fe.bytes.writesBA.Load(), &fm.writesBA, &fm.sinceBA)
	busyAB, stalledAB := progress(fe.bytes.writesAB.Load(), &fm.writesAB, &fm.sinceAB)

	var send, recv int64
	if b := fm.buf; b != nil {
		if stalledBA != fm.cutSend {
			// Cut once stalled; put back once the write that stalled
			// returned: with the buffer cut, it returns only when the
			// queue is nearly empty, i.e. the application drained it.
			b.ShrinkSend(stalledBA)
			fm.cutSend = stalledBA
		}
		if stalledAB != fm.cutRecv {
			b.ShrinkReceive(stalledAB)
			fm.cutRecv = stalledAB
		}
		send, recv = b.Buffered()
	}
	est := recv
	if fe.resetRequested() {
		// Reset already (by a sweep, or on request): it ends as soon as
		// its splice sees the reset, and holds nothing from then on.
		fm.estimate, fm.stalledSince = 0, time.Time{}
		return
	}
	if busyBA {
		est += send + spliceBufSize
		if fe.action() == Tunnel {
			est += r.mem.window
		}
	}
	if busyAB {
		est += spliceBufSize
	}
	fm.estimate = est
	fm.stalledSince = time.Time{}
	if stalledBA {
		fm.stalledSince = fm.sinceBA
	}
	if stalledAB && (fm.stalledSince.IsZero() || fm.sinceAB.Before(fm.stalledSince)) {
		fm.stalledSince = fm.sinceAB
	}
}

// warnMemory says that flows were reset over the budget: the first time,
// then at most every memoryLogEvery, with the count since the last.
func (r *Router) warnMemory(use MemoryUse, now time.Time) {
	m := &r.mem
	m.unwarned += use.ResetNow
	if m.unwarned == 0 || now.Sub(m.warned) < memoryLogEvery {
		return
	}
	r.opts.Log.WithFields(logrus.Fields{
		"reset": m.unwarned, "budget": use.Budget, "buffered": use.Buffered,
		"total_reset": m.resets.Load() + use.ResetNow,
	}).Warnf("reset %d flows whose applications stopped reading: their buffered data was over the flow memory budget (flow_memory: %s); a flow that drains keeps going", m.unwarned, FormatBytes(use.Budget))
	m.unwarned = 0
	m.warned = now
}

// FormatBytes writes n in the largest binary unit that keeps it whole
// to a tenth ("512MiB", "1.5GiB"), as flow_memory is written.
func FormatBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift {
			v := float64(n) / float64(int64(1)<<u.shift)
			if v == float64(int64(v)) {
				return fmt.Sprintf("%d%s", int64(v), u.name)
			}
			return fmt.Sprintf("%.1f%s", v, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// MemoryBudget is the budget in force (0: none).
func (r *Router) MemoryBudget() int64 { return r.mem.budget.Load() }
