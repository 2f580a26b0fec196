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
	w.run(func() { ids <- goid() })
	first := <-ids
	deadline := time.Now().Add(5 * time.Second)
	var second uint64
	for second != first && time.Now().Before(deadline) {
		// The worker may not be back at its select yet: then run starts
		// another, and the next try finds the first one waiting.
		w.run(func() { ids <- goid() })
		second = <-ids
	}
	if second != first {
		t.Errorf("no set-up ran on the worker of the first (goroutine %d)", first)
	}

	// A set-up while every worker is busy does not wait for them.
	block := make(chan struct{})
	w.run(func() { <-block })
	ran := make(chan struct{})
	go w.run(func() { close(ran) })
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
