package netstack

import (
	"sync"
	"time"
)

// workers runs flow set-ups on goroutines that outlive them. A set-up runs
// gVisor's handshake and the router's dial, deep enough that a fresh
// goroutine grew its stack (copying it) several times for every flow: 12%
// of shunt's CPU opening thousands of flows a second. A worker keeps its
// grown stack for the next flow. Workers are added when all are busy and
// leave after workerIdle without work, so a quiet stack keeps none.
//
// A set-up may leave work that carries its flow on (Handler.HandleTCP's
// carry): the worker runs it next, and is the flow's goroutine until it
// returns. While it carries a flow it is detached: wait does not wait for
// it (a flow ends when its upstream does, which may be after the stack has
// closed), and once the stack has closed it ends when its carry returns.
type workers struct {
	work chan func() func()
	done chan struct{}
	wg   sync.WaitGroup // the workers not carrying a flow

	mu     sync.Mutex // orders reattach with close
	closed bool
}

// workerIdle is how long a worker waits for another set-up before it ends.
const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{work: make(chan func() func()), done: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one if none is idle; what f
// returns, if not nil, runs next on the same worker. Not after close.
func (w *workers) run(f func() func()) {
	select {
	case w.work <- f:
	default:
		w.wg.Add(1)
		go w.loop(f)
	}
}

func (w *workers) loop(f func() func()) {
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		if carry := f(); carry != nil {
			w.wg.Done()
			carry()
			if !w.reattach() {
				return
			}
		}
		t.Reset(workerIdle)
		select {
		case f = <-w.work:
		case <-t.C:
			w.wg.Done()
			return
		case <-w.done:
			w.wg.Done()
			return
		}
	}
}

// reattach counts a worker that carried a flow among those wait waits for
// again, unless the workers have closed (the worker must then end).
func (w *workers) reattach() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.wg.Add(1)
	return true
}

// close ends the idle workers, and the busy ones once their set-up (or the
// flow they carry) returns; it does not wait for them (see wait).
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
}

// wait waits, after close, for every worker that is not carrying a flow to
// end.
func (w *workers) wait() { w.wg.Wait() }
