package router

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/nettest"
)

// pollConn makes a TCP connection a pollReader, as netstack's flows are: a
// reader goroutine (test scaffolding only) fills a buffer and notifies;
// TryRead takes from it without blocking.
type pollConn struct {
	net.Conn
	mu     sync.Mutex
	buf    []byte
	err    error // after buf drains
	notify []func()
	reads  int // TryRead calls, to see that a quiet flow is not polled
}

func newPollConn(c net.Conn) *pollConn {
	p := &pollConn{Conn: c}
	go func() {
		b := make([]byte, 8<<10)
		for {
			n, err := c.Read(b)
			p.mu.Lock()
			p.buf = append(p.buf, b[:n]...)
			if err != nil {
				p.err = err
			}
			fs := append([]func(){}, p.notify...)
			p.mu.Unlock()
			for _, f := range fs {
				f()
			}
			if err != nil {
				return
			}
		}
	}()
	return p
}

func (p *pollConn) TryRead(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		return n, nil
	}
	return 0, p.err
}

func (p *pollConn) NotifyReadable(f func()) func() {
	p.mu.Lock()
	p.notify = append(p.notify, f)
	i := len(p.notify) - 1
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.notify[i] = func() {}
		p.mu.Unlock()
	}
}

func (p *pollConn) CloseWrite() error { return p.Conn.(*net.TCPConn).CloseWrite() }

func (p *pollConn) tryReads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

// joinedPipe is c1 ⇄ Join(poll(a), b) ⇄ c2.
func joinedPipe(t *testing.T) (c1, c2 net.Conn, stop func(), err error) {
	c1, a := tcpPair(t)
	b, c2 := tcpPair(t)
	done := make(chan struct{})
	Join(newPollConn(a), b, func(int64, int64, error) { close(done) })
	stop = func() {
		c1.Close()
		c2.Close()
		<-done
	}
	return c1, c2, stop, nil
}

func TestJoinConformance(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return joinedPipe(t) })
}

func TestJoinBulkAndHalfClose(t *testing.T) {
	c1, a := tcpPair(t)
	b, c2 := tcpPair(t)
	type result struct {
		ab, ba int64
		err    error
	}
	res := make(chan result, 1)
	Join(newPollConn(a), b, func(ab, ba int64, err error) { res <- result{ab, ba, err} })
	data := make([]byte, 8<<20)
	rand.Read(data)
	go func() {
		got, _ := io.ReadAll(c2) // ends when c1's FIN crosses the pump
		c2.Write(got[:1000])
		c2.Close()
	}()
	go func() {
		c1.Write(data)
		c1.(*net.TCPConn).CloseWrite()
	}()
	back, err := io.ReadAll(c1)
	if err != nil || !bytes.Equal(back, data[:1000]) {
		t.Fatalf("answer: %d bytes, %v", len(back), err)
	}
	r := <-res
	if r.ab != int64(len(data)) || r.ba != 1000 || r.err != nil {
		t.Fatalf("counted %d/%d, %v; want %d/1000, nil", r.ab, r.ba, r.err, len(data))
	}
	c1.Close()
}

// A quiet flow holds no pump goroutine and is not polled.
func TestJoinIdleHoldsNoPump(t *testing.T) {
	c1, a := tcpPair(t)
	b, c2 := tcpPair(t)
	defer c1.Close()
	defer c2.Close()
	pa := newPollConn(a)
	done := make(chan struct{})
	Join(pa, b, func(int64, int64, error) { close(done) })
	c1.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c2, buf); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	reads := pa.tryReads()
	var stacks [1 << 20]byte
	n := runtime.Stack(stacks[:], true)
	if bytes.Contains(stacks[:n], []byte("(*pump).run")) {
		t.Fatal("a pump goroutine stays on a quiet flow")
	}
	time.Sleep(50 * time.Millisecond)
	if pa.tryReads() != reads {
		t.Fatal("a quiet flow is being polled")
	}
	c1.Close()
	c2.Close()
	<-done
}

// An upstream that breaks resets the application's side, and the join ends
// even though the application side stays quiet.
func TestJoinUpstreamErrorAborts(t *testing.T) {
	c1, a := tcpPair(t)
	defer c1.Close()
	b, c2 := tcpPair(t)
	defer c2.Close()
	down := &abortPoll{pollConn: newPollConn(a), aborted: make(chan struct{})}
	res := make(chan error, 1)
	Join(down, &failingConn{Conn: b, err: errors.New("SSH connection lost")}, func(_, _ int64, err error) { res <- err })
	select {
	case err := <-res:
		if err == nil {
			t.Fatal("Join reported no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the join never ended")
	}
	select {
	case <-down.aborted:
	default:
		t.Fatal("the application side was closed, not aborted")
	}
}

type abortPoll struct {
	*pollConn
	aborted chan struct{}
	once    sync.Once
}

func (a *abortPoll) Abort() {
	a.once.Do(func() { close(a.aborted) })
	a.pollConn.Conn.(*net.TCPConn).SetLinger(0)
	a.pollConn.Close()
}

// BenchmarkSpliceBulk: one direction of a spliced loopback flow, 64 KiB
// writes; allocations per write must be zero (pooled buffers). (The
// readiness-driven direction is measured end to end by bench/run: its test
// double here would measure itself.)
func BenchmarkSpliceBulk(b *testing.B) {
	c1, a := tcpPair(b)
	y, c2 := tcpPair(b)
	done := make(chan struct{})
	Join(a, y, func(int64, int64, error) { close(done) })
	go io.Copy(io.Discard, c2)
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c1.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c1.Close()
	c2.Close()
	<-done
}

// BenchmarkJoinFlow: what the splice costs per flow: join, one request
// and its answer, both ends closing.
func BenchmarkJoinFlow(b *testing.B) {
	req, resp := []byte("GET / HTTP/1.0\r\n\r\n"), bytes.Repeat([]byte("x"), 512)
	b.ReportAllocs()
	for b.Loop() {
		app, a := net.Pipe()
		c, up := net.Pipe()
		done := make(chan struct{})
		Join(a, up, func(int64, int64, error) { close(done) })
		go func() {
			buf := make([]byte, len(req))
			io.ReadFull(c, buf)
			c.Write(resp)
			c.Close()
		}()
		app.Write(req)
		io.ReadFull(app, make([]byte, len(resp)))
		app.Close()
		<-done
	}
}
