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
type workers struct {
	work chan func()
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// workerIdle is how long a worker waits for another set-up before it ends.
const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{work: make(chan func()), done: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one if none is idle.
func (w *workers) run(f func()) {
	select {
	case w.work <- f:
	default:
		w.wg.Add(1)
		go w.loop(f)
	}
}

func (w *workers) loop(f func()) {
	defer w.wg.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		f()
		t.Reset(workerIdle)
		select {
		case f = <-w.work:
		case <-t.C:
			return
		case <-w.done:
			return
		}
	}
}

// close ends the idle workers, and the busy ones once their set-up returns;
// it does not wait for them (see wait).
func (w *workers) close() { w.once.Do(func() { close(w.done) }) }

// wait waits for every worker to end, after close.
func (w *workers) wait() { w.wg.Wait() }
