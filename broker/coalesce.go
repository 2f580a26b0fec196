package broker

import (
	"net"
	"sync"
	"time"
)

// coalescingConn batches the writes of an SSH transport. x/crypto flushes
// after every packet (32 KiB at most), one system call each; OpenSSH
// instead writes whatever its packet layer holds when the socket can take
// it. Here a large Write only queues, and one goroutine writes everything
// queued while its previous write ran, in one call: a busy connection
// batches on its own. A small write on an idle connection goes straight to
// the socket (see directMax): no added latency, no goroutine hand-off.
type coalescingConn struct {
	net.Conn

	mu      sync.Mutex
	cond    *sync.Cond
	queued  []byte
	writing bool // the writer goroutine holds a batch
	err     error
	closed  bool
	done    chan struct{}
}

// maxQueued bounds the bytes waiting for the socket; writers wait beyond
// it, as they would on a full socket buffer.
const maxQueued = 1 << 20

// closeFlushTime bounds how long Close waits for queued bytes to go out.
const closeFlushTime = 2 * time.Second

func newCoalescingConn(c net.Conn) *coalescingConn {
	w := &coalescingConn{Conn: c, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// NetConn returns the connection under the batching.
func (w *coalescingConn) NetConn() net.Conn { return w.Conn }

// directMax is the largest write that goes straight to the socket, on the
// caller's goroutine, when nothing is queued or being written: a channel
// open, a window adjustment or a short request then leaves at once,
// without waking the writer goroutine. Larger writes (bulk data) always
// queue, so encrypting the next packet overlaps with writing this one.
const directMax = 4 << 10

// Write queues p, or writes it at once when it is small and the connection
// idle. An error of an earlier write is returned instead.
func (w *coalescingConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	for w.err == nil && !w.closed && len(w.queued) > 0 && len(w.queued)+len(p) > maxQueued {
		w.cond.Wait()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	if w.closed {
		w.mu.Unlock()
		return 0, net.ErrClosed
	}
	if len(p) <= directMax && !w.writing && len(w.queued) == 0 {
		w.writing = true
		w.mu.Unlock()
		return w.writeOut(p)
	}
	w.queued = append(w.queued, p...)
	w.cond.Broadcast()
	w.mu.Unlock()
	return len(p), nil
}

func (w *coalescingConn) run() {
	defer close(w.done)
	var batch []byte
	for {
		w.mu.Lock()
		// Wait for data, and for a direct write to finish (even when
		// closing: its bytes go before what is queued).
		for w.err == nil && (w.writing || (len(w.queued) == 0 && !w.closed)) {
			w.cond.Wait()
		}
		if len(w.queued) == 0 || w.err != nil {
			w.mu.Unlock()
			return
		}
		batch, w.queued = w.queued, batch[:0]
		w.writing = true
		w.mu.Unlock()

		w.writeOut(batch)
	}
}

// writeOut writes p to the socket; the caller has set writing, without
// holding mu. The first error sticks, and whoever waits for the write to
// end (the writer goroutine, a queued Write, Close) is woken.
func (w *coalescingConn) writeOut(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	w.mu.Lock()
	w.writing = false
	if err != nil && w.err == nil {
		w.err = err
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	return n, err
}

// Close sends what is queued (for a bounded time), then closes.
func (w *coalescingConn) Close() error {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-time.After(closeFlushTime):
	}
	err := w.Conn.Close()
	<-w.done
	return err
}
