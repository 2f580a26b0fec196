package router

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"

	"golang.org/x/net/nettest"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	return c, s
}

// splicedPipe is c1 ⇄ Splice(a, b) ⇄ c2, the shape of every captured flow.
func splicedPipe(t *testing.T) (c1, c2 net.Conn, stop func(), err error) {
	c1, a := tcpPair(t)
	b, c2 := tcpPair(t)
	done := make(chan struct{})
	go func() {
		Splice(a, b)
		close(done)
	}()
	stop = func() {
		c1.Close()
		c2.Close()
		<-done
	}
	return c1, c2, stop, nil
}

func TestSpliceConformance(t *testing.T) {
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) { return splicedPipe(t) })
}

// Half-close: c1 finishes writing and keeps reading the answer.
func TestSpliceHalfClose(t *testing.T) {
	c1, c2, stop, _ := splicedPipe(t)
	defer stop()
	go func() {
		req, _ := io.ReadAll(c2) // ends when c1's CloseWrite crosses the splice
		c2.Write(bytes.ToUpper(req))
		c2.Close()
	}()
	c1.Write([]byte("question"))
	c1.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c1)
	if err != nil || string(got) != "QUESTION" {
		t.Fatalf("answer = %q, %v", got, err)
	}
}

func TestSpliceCounts(t *testing.T) {
	c1, a := tcpPair(t)
	b, c2 := tcpPair(t)
	type result struct{ ab, ba int64 }
	res := make(chan result, 1)
	go func() {
		ab, ba, _ := Splice(a, b)
		res <- result{ab, ba}
	}()
	go func() {
		c2.Write(make([]byte, 300))
		io.Copy(io.Discard, c2)
		c2.Close()
	}()
	c1.Write(make([]byte, 1000))
	c1.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, c1)
	c1.Close()
	r := <-res
	if r.ab != 1000 || r.ba != 300 {
		t.Fatalf("counted %d/%d bytes, want 1000/300", r.ab, r.ba)
	}
}

// failingConn fails its reads with err after the first one.
type failingConn struct {
	net.Conn
	err error
}

func (f *failingConn) Read(b []byte) (int, error) { return 0, f.err }

type abortRecorder struct {
	net.Conn
	aborted chan struct{}
}

func (a *abortRecorder) Abort() { close(a.aborted); a.Conn.Close() }

// An upstream that breaks (an SSH connection lost) resets the application.
func TestSpliceErrorAborts(t *testing.T) {
	c1, a := tcpPair(t)
	defer c1.Close()
	b, c2 := tcpPair(t)
	defer c2.Close()
	down := &abortRecorder{Conn: a, aborted: make(chan struct{})}
	_, _, err := Splice(down, &failingConn{Conn: b, err: errors.New("SSH connection lost")})
	if err == nil {
		t.Fatal("Splice reported no error")
	}
	select {
	case <-down.aborted:
	default:
		t.Fatal("the application side was closed, not aborted")
	}
}

// scriptedReader returns chunks of the given sizes and records the size
// of the buffer each Read was offered.
type scriptedReader struct {
	chunks  []int
	offered []int
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	r.offered = append(r.offered, len(p))
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := min(r.chunks[0], len(p))
	r.chunks = r.chunks[1:]
	return n, nil
}

// A burst moves to the large buffer; a quiet flow waits with the small one.
func TestCopyAdaptiveBuffer(t *testing.T) {
	want0 := []int{100, smallBufSize, 60000, 30000, 200, 100}
	r := &scriptedReader{chunks: slices.Clone(want0)}
	var sink bytes.Buffer
	var count atomic.Int64
	var writes atomic.Uint64
	n, err := copyAdaptive(&sink, r, &count, &writes)
	if err != nil || n != int64(sink.Len()) || count.Load() != n {
		t.Fatalf("copied %d (counted %d), %v", n, count.Load(), err)
	}
	if w := writes.Load(); w != 2*uint64(len(want0)) {
		t.Errorf("writes counted %d, want 2 for each of %d writes", w, len(want0))
	}
	want := []int{smallBufSize, smallBufSize, spliceBufSize, spliceBufSize, spliceBufSize, smallBufSize, smallBufSize}
	if fmt.Sprint(r.offered) != fmt.Sprint(want) {
		t.Errorf("buffers offered %v, want %v", r.offered, want)
	}
}
