package broker

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingConn counts the writes that reach it.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func TestCoalescingConnKeepsOrderAndBatches(t *testing.T) {
	a, b := net.Pipe()
	cc := &countingConn{Conn: a}
	w := newCoalescingConn(cc)
	var want bytes.Buffer
	got := make(chan []byte)
	go func() { d, _ := io.ReadAll(b); got <- d }()
	for i := range 2000 {
		size := directMax + 1 + i%700 // bulk: queued
		if i%10 == 0 {
			size = 100 + i%700 // small ones in between: direct when idle
		}
		p := bytes.Repeat([]byte{byte(i)}, size)
		want.Write(p)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if d := <-got; !bytes.Equal(d, want.Bytes()) {
		t.Fatalf("received %d bytes, sent %d, or out of order", len(d), want.Len())
	}
	if cc.writes >= 2000 {
		t.Errorf("%d writes for 2000 packets: nothing was batched", cc.writes)
	}
	t.Logf("2000 packets in %d writes", cc.writes)
}

func TestCoalescingConnReportsErrors(t *testing.T) {
	a, b := net.Pipe()
	w := newCoalescingConn(a)
	b.Close()
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = w.Write([]byte("x"))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatal("writes to a closed peer never failed")
	}
	w.Close()
}

// A small write on an idle connection reaches the socket from the caller's
// goroutine, not the writer goroutine; a large one is queued.
func TestCoalescingConnSmallWriteIsDirect(t *testing.T) {
	a, b := net.Pipe()
	sc := &stackConn{Conn: a}
	w := newCoalescingConn(sc)
	go io.Copy(io.Discard, b)
	for _, size := range []int{12, directMax + 1} {
		if _, err := w.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(sc.fromWriter) != 2 || sc.fromWriter[0] || !sc.fromWriter[1] {
		t.Fatalf("writes from the writer goroutine: %v; want [false true] (small direct, large queued)", sc.fromWriter)
	}
}

// stackConn records, for each write, whether the writer goroutine made it.
type stackConn struct {
	net.Conn
	mu         sync.Mutex
	fromWriter []bool
}

func (c *stackConn) Write(p []byte) (int, error) {
	buf := make([]byte, 8<<10)
	st := string(buf[:runtime.Stack(buf, false)])
	c.mu.Lock()
	c.fromWriter = append(c.fromWriter, strings.Contains(st, "(*coalescingConn).run"))
	c.mu.Unlock()
	return c.Conn.Write(p)
}
