package broker

import (
	"bytes"
	"io"
	"net"
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
		p := bytes.Repeat([]byte{byte(i)}, 1000+i%700)
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
