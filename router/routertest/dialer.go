// Package routertest provides a double for what the router dials through:
// a Dialer that is at once its Tunnels and its direct Dialer (and the
// broker's Dialer), recording every dial, answering with echo connections,
// and failing or hanging where a test says. It imports nothing of shunt's,
// so the router's own tests use it too; dialer_test.go checks that it fits
// router.Tunnels, router.Dialer and broker.Dialer.
package routertest

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Call is one dial.
type Call struct {
	// Profile is the tunnel's profile; empty for a direct dial.
	Profile string
	// Server is the SSH server of a host-from-application dial (DialVia).
	Server string
	// Addr is where the dial goes ("host:port").
	Addr string
}

// String is "profile/addr" for a tunnel, "profile@server/addr" for a
// host-from-application one, "direct/addr" for a direct dial.
func (c Call) String() string {
	switch {
	case c.Profile == "":
		return "direct/" + c.Addr
	case c.Server != "":
		return c.Profile + "@" + c.Server + "/" + c.Addr
	}
	return c.Profile + "/" + c.Addr
}

// Dialer records every dial and, unless told otherwise, answers it with an
// echo connection. Its zero value is ready to use.
type Dialer struct {
	// Fail, when set, is asked about each dial: its error fails it.
	Fail func(Call) error
	// Hang, when set, holds the dials it is true for until their context
	// ends, then fails them with the context's error: a destination that
	// never answers.
	Hang func(Call) bool
	// Connect, when set, makes the connection of each dial that neither
	// fails nor hangs, in place of an echo (say, a real connection to a
	// test's SSH server).
	Connect func(ctx context.Context, c Call) (net.Conn, error)

	mu      sync.Mutex
	calls   []Call
	conns   []*Conn
	pending atomic.Int32
}

// Dial implements router.Tunnels.
func (d *Dialer) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	return d.dial(ctx, Call{Profile: profile, Addr: addr})
}

// DialVia implements router.Tunnels.
func (d *Dialer) DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error) {
	return d.dial(ctx, Call{Profile: profile, Server: server, Addr: addr})
}

// DialContext implements router.Dialer, a direct dial.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.dial(ctx, Call{Addr: addr})
}

func (d *Dialer) dial(ctx context.Context, c Call) (net.Conn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, c)
	d.mu.Unlock()
	if d.Fail != nil {
		if err := d.Fail(c); err != nil {
			return nil, err
		}
	}
	if d.Hang != nil && d.Hang(c) {
		d.pending.Add(1)
		defer d.pending.Add(-1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if d.Connect != nil {
		return d.Connect(ctx, c)
	}
	conn := &Conn{Conn: Echo()}
	d.mu.Lock()
	d.conns = append(d.conns, conn)
	d.mu.Unlock()
	return conn, nil
}

// Calls are the dials so far, in order.
func (d *Dialer) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Call(nil), d.calls...)
}

// Dials are the dials so far, in order, as Call.String gives them.
func (d *Dialer) Dials() []string {
	var out []string
	for _, c := range d.Calls() {
		out = append(out, c.String())
	}
	return out
}

// Pending is the number of dials hanging now.
func (d *Dialer) Pending() int { return int(d.pending.Load()) }

// Conns are the echo connections the dialer made, in order.
func (d *Dialer) Conns() []*Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*Conn(nil), d.conns...)
}

// Conn is an upstream connection the dialer made; it knows whether it was
// closed.
type Conn struct {
	net.Conn
	closed atomic.Bool
}

// Close implements net.Conn.
func (c *Conn) Close() error { c.closed.Store(true); return c.Conn.Close() }

// Closed reports whether Close was called.
func (c *Conn) Closed() bool { return c.closed.Load() }

// Echo is a connection whose far end sends back whatever it reads, and
// closes when it reads the end.
func Echo() net.Conn {
	a, b := net.Pipe()
	go func() { io.Copy(b, b); b.Close() }()
	return a
}
