package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/state"
)

// Connect logs in now, once however often it is asked; Disconnect closes
// the connection and resets its flows, without a backoff, a reconnect
// or an error, and the next flow connects again.
func TestConnectAndDisconnect(t *testing.T) {
	f := newFixture(t)
	ev := &recorder{}
	b := f.broker(t, func(_ *Profile, o *Options) { o.Events = ev })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := b.Connect(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	// The server counts a login a moment after the client sees it.
	logins := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for f.srv.Logins.Load() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := f.srv.Logins.Load(); n != want {
			t.Fatalf("%d logins, want %d", n, want)
		}
	}
	logins(1)
	if p := profileStatus(t, b, "gw", ""); p.State != state.Connected {
		t.Fatalf("after Connect the profile is %s", p.State)
	}
	if err := b.Connect(ctx, "gw"); err != nil {
		t.Fatalf("a second Connect: %v", err)
	}

	target := brokertest.Echo(t)
	c, err := b.Dial(ctx, "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before")
	if err := b.Disconnect("gw"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(c); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("the flow's read after Disconnect: %v, want ErrConnectionLost (a reset, not a clean end)", err)
	}
	p := profileStatus(t, b, "gw", "")
	if p.State != state.Idle || p.Error != "" || p.Reconnects != 0 {
		t.Errorf("after Disconnect: state %s, error %q, reconnects %d; want idle, none, 0", p.State, p.Error, p.Reconnects)
	}
	d, err := b.Dial(ctx, "gw", target)
	if err != nil {
		t.Fatalf("the next flow after Disconnect: %v", err)
	}
	defer d.Close()
	roundTrip(t, d, "after")
	logins(2) // the second Connect made none; the next flow connects again
	if p := profileStatus(t, b, "gw", ""); p.Reconnects != 0 {
		t.Errorf("a connection after Disconnect counted as a reconnect (%d)", p.Reconnects)
	}
	if got := ev.states("gw", ""); !strings.Contains(strings.Join(got, " "), "connected idle connecting connected") {
		t.Errorf("states %v", got)
	}

	if err := b.Connect(ctx, "nope"); err == nil || !strings.Contains(err.Error(), `no connection profile "nope"`) {
		t.Errorf("Connect of an unknown profile: %v", err)
	}
	if err := b.Disconnect("nope"); err == nil {
		t.Error("Disconnect of an unknown profile succeeded")
	}
}

// A profile without a host cannot be connected on its own; Connect waits
// no longer than its context for a server that never answers.
func TestConnectRefusals(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t, func(p *Profile, _ *Options) { p.Hosts = nil })
	if err := b.Connect(context.Background(), "gw"); err == nil || !strings.Contains(err.Error(), "has no host") {
		t.Errorf("Connect of a profile without host: %v", err)
	}
	ln := blackhole(t)
	b = f.broker(t, func(p *Profile, o *Options) { p.Hosts = []string{"127.0.0.1"}; p.Port = ln })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b.Connect(ctx, "gw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Connect to a server that never answers: %v, want the context's end", err)
	}
}

// blackhole is a port that accepts TCP connections and never says a word.
func blackhole(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
