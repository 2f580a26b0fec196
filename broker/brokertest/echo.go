package brokertest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Echo listens on the loopback and echoes every connection: the far end
// of a test's tunnels. It returns the address. At the test's cleanup the
// listener and every connection still open are closed, and Echo's
// goroutines have ended (goleak finds none).
func Echo(t testing.TB) string {
	t.Helper()
	return Serve(t, func(c net.Conn) { io.Copy(c, c) })
}

// Serve listens on the loopback and runs handle for every connection, in
// a goroutine of its own, closing the connection after it: a server that
// speaks whatever a test needs. It returns the address. At the test's
// cleanup the listener and every connection still open are closed, and
// Serve's goroutines have ended.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	return ln.Addr().String()
}
