package netstack

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// goid is the running goroutine's id, read from its stack trace header.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

func TestWorkersReuseAndGrow(t *testing.T) {
	w := newWorkers()
	ids := make(chan uint64, 3)

	// A set-up after another one ended runs on the same goroutine.
	w.run(func() func() { ids <- goid(); return nil })
	first := <-ids
	deadline := time.Now().Add(5 * time.Second)
	var second uint64
	for second != first && time.Now().Before(deadline) {
		// The worker may not be back at its select yet: then run starts
		// another, and the next try finds the first one waiting.
		w.run(func() func() { ids <- goid(); return nil })
		second = <-ids
	}
	if second != first {
		t.Errorf("no set-up ran on the worker of the first (goroutine %d)", first)
	}

	// A set-up while every worker is busy does not wait for them.
	block := make(chan struct{})
	w.run(func() func() { <-block; return nil })
	ran := make(chan struct{})
	go w.run(func() func() { close(ran); return nil })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Error("a set-up waited for a busy worker")
	}
	close(block)

	// close ends them all.
	w.close()
	done := make(chan struct{})
	go func() { w.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("workers still running after close")
	}
}

func TestWorkersCarry(t *testing.T) {
	w := newWorkers()
	type ids struct{ setup, carry uint64 }
	got := make(chan ids, 1)
	release := make(chan struct{})
	carried := make(chan struct{})
	w.run(func() func() {
		setup := goid()
		return func() {
			got <- ids{setup, goid()}
			<-release
			close(carried)
		}
	})
	id := <-got
	if id.setup != id.carry {
		t.Errorf("carry ran on goroutine %d, its set-up on %d: want the same", id.carry, id.setup)
	}

	// A worker carrying a flow is not waited for: the flow may outlive
	// the stack.
	w.close()
	done := make(chan struct{})
	go func() { w.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("wait waited for a worker carrying a flow")
	}
	// It ends once its flow does.
	close(release)
	<-carried
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && stackHas("netstack.(*workers).loop") {
		time.Sleep(10 * time.Millisecond)
	}
	if stackHas("netstack.(*workers).loop") {
		t.Error("the worker that carried a flow is still running after close and the flow's end")
	}
}

func TestWorkersCarryThenReuse(t *testing.T) {
	w := newWorkers()
	defer func() { w.close(); w.wait() }()
	first := make(chan uint64, 1)
	w.run(func() func() { return func() { first <- goid() } })
	carrier := <-first
	ids := make(chan uint64, 1)
	deadline := time.Now().Add(5 * time.Second)
	var next uint64
	for next != carrier && time.Now().Before(deadline) {
		w.run(func() func() { ids <- goid(); return nil })
		next = <-ids
	}
	if next != carrier {
		t.Errorf("no set-up ran on the worker that carried a flow (goroutine %d) after the flow ended", carrier)
	}
}

// stackHas reports whether some goroutine's stack has fn.
func stackHas(fn string) bool {
	b := make([]byte, 1<<20)
	return bytes.Contains(b[:runtime.Stack(b, true)], []byte(fn))
}
