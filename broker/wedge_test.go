package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// Servers that send what a direct-tcpip channel's flow never reads:
// channel requests (sshd's ClientAliveInterval probes), floods of them,
// stderr data; and servers that leave channel opens unanswered, or
// connections that die with x/crypto's goroutines stuck.

// keyedServerWith is keyedServer with server options.
func keyedServerWith(t *testing.T, opts brokertest.Options) (*brokertest.Server, Profile) {
	t.Helper()
	srv, p := server(t, opts)
	dir := t.TempDir()
	_, s := writeKey(t, dir, "id", "")
	srv.Allow(s.PublicKey())
	p.IdentityFiles = []string{filepath.Join(dir, "id")}
	return srv, p
}

// onFirstChannel runs f on the first forwarded channel only.
func onFirstChannel(f func(ssh.Channel)) func(ssh.Channel) {
	var done atomic.Bool
	return func(ch ssh.Channel) {
		if done.CompareAndSwap(false, true) {
			f(ch)
		}
	}
}

// readResult is what one Read returned.
type readResult struct {
	data string
	err  error
}

// parkReader reads c from a goroutine, as the router does for the server
// → application direction: while nothing comes, it is parked in Read.
func parkReader(c net.Conn) <-chan readResult {
	out := make(chan readResult, 16)
	go func() {
		defer close(out)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			out <- readResult{string(buf[:n]), err}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// expectRead waits (boundedly) for the parked reader to deliver want.
func expectRead(t *testing.T, reads <-chan readResult, want string) {
	t.Helper()
	got := ""
	deadline := time.After(10 * time.Second)
	for got != want {
		select {
		case r := <-reads:
			if r.err != nil {
				t.Fatalf("read: %v after %q, want %q", r.err, got, want)
			}
			got += r.data
		case <-deadline:
			t.Fatalf("read %q within 10 s, want %q", got, want)
		}
	}
}

func statusOf(b *Broker, profile string) Connection {
	for _, st := range b.Connections() {
		if st.Profile == profile {
			return st
		}
	}
	return Connection{}
}

// sshd's ClientAliveInterval probes are want-reply channel requests on an
// open channel. They must be answered while the channel's flow waits in
// Read, however many come (x/crypto queues 16), and the flow, and other
// flows of the connection, must go on working.
func TestChannelRequestsAnsweredWhileFlowWaits(t *testing.T) {
	const probes = 40
	answered := make(chan error, probes)
	srv, p := keyedServerWith(t, brokertest.Options{Forwarded: onFirstChannel(func(ch ssh.Channel) {
		for range probes {
			ok, err := ch.SendRequest("keepalive@openssh.com", true, nil)
			if err == nil && ok {
				err = errors.New("probe accepted, want refused")
			}
			answered <- err
		}
	})})
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reads := parkReader(c)

	deadline := time.After(10 * time.Second)
	for i := range probes {
		select {
		case err := <-answered:
			if err != nil {
				t.Fatalf("probe %d: %v", i+1, err)
			}
		case <-deadline:
			t.Fatalf("%d of %d probes answered within 10 s while the flow waited in Read", i, probes)
		}
	}
	if _, err := c.Write([]byte("still there")); err != nil {
		t.Fatal(err)
	}
	expectRead(t, reads, "still there")
	mustDial(t, b, "gw", target) // another flow of the same connection
	if n := srv.Logins.Load(); n != 1 {
		t.Errorf("%d logins, want the one connection throughout", n)
	}
	if n := statusOf(b, "gw").RequestsRefused; n != probes {
		t.Errorf("RequestsRefused = %d, want %d", n, probes)
	}
}

// 200 requests without want-reply on a quiet channel: x/crypto's queue
// for that channel fills after 16, and its reader, which serves every
// channel of the connection, would wait for room forever.
func TestRequestFloodDoesNotStallConnection(t *testing.T) {
	flooded := make(chan error, 1)
	_, p := keyedServerWith(t, brokertest.Options{Forwarded: onFirstChannel(func(ch ssh.Channel) {
		for range 200 {
			if _, err := ch.SendRequest("flood@example.com", false, nil); err != nil {
				flooded <- err
				return
			}
		}
		flooded <- nil
	})})
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reads := parkReader(c)
	if err := <-flooded; err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := b.Dial(ctx, "gw", target)
	if err != nil {
		t.Fatalf("a second flow after the flood: %v", err)
	}
	defer c2.Close()
	roundTrip(t, c2, "second flow")
	c.Write([]byte("first flow"))
	expectRead(t, reads, "first flow")
	waitUntil(t, func() bool { return statusOf(b, "gw").RequestsRefused == 200 })
}

// A hostile server floods a quiet channel with requests and then stops
// answering: the keepalives declare the connection dead, and it must be
// torn down (its flows reset) and replaced (the next flow reconnects).
func TestKeepaliveReplacesFloodedConnection(t *testing.T) {
	var srv *brokertest.Server
	flooded := make(chan struct{})
	srv, p := keyedServerWith(t, brokertest.Options{Forwarded: onFirstChannel(func(ch ssh.Channel) {
		for range 200 {
			ch.SendRequest("flood@example.com", false, nil)
		}
		srv.IgnoreGlobalRequests.Store(true)
		close(flooded)
	})})
	p.KeepaliveInterval = 100 * time.Millisecond
	p.KeepaliveCount = 3
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reads := parkReader(c)
	<-flooded

	select {
	case r := <-reads:
		if !errors.Is(r.err, ErrConnectionLost) {
			t.Fatalf("the flow of the dead connection read %q, %v; want ErrConnectionLost", r.data, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the flow of a connection declared dead was not reset within 10 s")
	}
	srv.IgnoreGlobalRequests.Store(false)
	mustDial(t, b, "gw", target)
	if n := srv.Logins.Load(); n != 2 {
		t.Errorf("%d logins, want 2 (a new connection)", n)
	}
}

// A connection that keepalives declared dead is replaced even when
// x/crypto cannot unwind it: here its transport is a channel of a jump
// connection whose server went silent (a frozen relay), so its reader
// stays parked in that channel and its Close and Wait never return.
func TestDeadConnectionReplacedWhileItsReaderIsStuck(t *testing.T) {
	dir := t.TempDir()
	_, key := writeKey(t, dir, "id", "")
	auth := brokertest.Options{Authorized: []ssh.PublicKey{key.PublicKey()}}
	jumpSrv, jump := server(t, auth)
	_, inner := server(t, auth)
	relay := newFreezableRelay(t, jumpSrv.Addr)
	kh := filepath.Join(dir, "kh_relay")
	line := strings.Replace(jumpSrv.KnownHostsLine(), fmt.Sprint(jumpSrv.Port()), fmt.Sprint(relay.port()), 1)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	jump.Name, jump.Port, jump.KnownHosts = "bastion", relay.port(), []string{kh}
	jump.IdentityFiles = []string{filepath.Join(dir, "id")}
	jump.KeepaliveInterval = time.Hour // the jump is not declared dead during the test
	inner.Name, inner.Jump = "inner", "bastion"
	inner.IdentityFiles = []string{filepath.Join(dir, "id")}
	inner.KeepaliveInterval, inner.KeepaliveCount = 100*time.Millisecond, 3
	b := newBroker(t, Options{}, jump, inner)
	target := brokertest.Echo(t)
	mustDial(t, b, "inner", target)

	relay.freeze()
	waitUntil(t, func() bool { return !statusOf(b, "inner").Up })
	// The next flow is a new connection attempt (which waits for the
	// frozen jump), not a refusal by the dead connection.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := b.Dial(ctx, "inner", target)
	var se *SetupError
	if !errors.As(err, &se) || errors.Is(err, ErrConnectionLost) {
		t.Fatalf("a flow after the connection was declared dead: %v, want a SetupError of a new attempt", err)
	}
}

// A server that sends stderr data on a direct-tcpip channel: unread, it
// would keep the channel's 2 MiB window, and the channel would stall.
func TestStderrDataIsDiscarded(t *testing.T) {
	const size = 5 << 20
	written := make(chan error, 1)
	_, p := keyedServerWith(t, brokertest.Options{Forwarded: onFirstChannel(func(ch ssh.Channel) {
		_, err := ch.Stderr().Write(make([]byte, size))
		written <- err
	})})
	b := newBroker(t, Options{}, p)
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reads := parkReader(c)
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server could not send 5 MiB of stderr data within 10 s: the channel's window is stuck")
	}
	c.Write([]byte("data after stderr"))
	expectRead(t, reads, "data after stderr")
	waitUntil(t, func() bool { return statusOf(b, "gw").StderrDiscarded == size })
}

// brokerGoroutines counts the goroutines this package started (not the
// tests', not brokertest's, not x/crypto's).
func brokerGoroutines() int {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		for i, l := range lines {
			if !strings.HasPrefix(l, "created by github.com/shunt-dev/shunt/broker.") || i+1 >= len(lines) {
				continue
			}
			file := strings.Fields(strings.TrimSpace(lines[i+1]))[0]
			if !strings.Contains(file, "_test.go:") {
				n++
			}
		}
	}
	return n
}

// Idle flows to OpenSSH park no goroutine of their own in the broker: its
// channel requests are served per connection, and OpenSSH sends no stderr
// data on forwarding channels (see stderrMayArrive).
func TestIdleFlowsParkNoGoroutine(t *testing.T) {
	_, p := keyedServerWith(t, brokertest.Options{ServerVersion: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"})
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target)
	base := brokerGoroutines()
	const flows = 200
	for range flows {
		mustDial(t, b, "gw", target)
	}
	// The shards waiting on the channels' requests: flows/64 more.
	if got := brokerGoroutines() - base; got > flows/requestShardSize+2 {
		t.Fatalf("%d idle flows added %d broker goroutines, want at most %d", flows, got, flows/requestShardSize+2)
	}
}

// Channel opens the server never answers: a flow that gives up leaves no
// goroutine behind but x/crypto's own wait for the answer (OpenChannel
// cannot be cancelled), and a channel the server opens after all is
// closed at once, so the server lets go of its side.
func TestAbandonedOpensAreReleased(t *testing.T) {
	srv, p := keyedServerWith(t, brokertest.Options{})
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target)
	base := brokerGoroutines()

	srv.HoldOpens.Store(true)
	const opens = 20
	for range opens {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := b.Dial(ctx, "gw", target)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial while the server holds opens: %v, want the deadline", err)
		}
	}
	waitUntil(t, func() bool { return srv.Held() == opens })
	if got := brokerGoroutines() - base; got > opens {
		t.Errorf("%d abandoned opens left %d broker goroutines, want at most one each", opens, got)
	}
	if st := statusOf(b, "gw"); st.Channels != 1 {
		t.Errorf("Channels = %d, want 1 (abandoned opens are not flows)", st.Channels)
	}

	srv.HoldOpens.Store(false)
	srv.ReleaseHeld()
	// The server opens them all; only the first flow's channel stays.
	waitUntil(t, func() bool { return srv.Accepted.Load() == 1+opens })
	waitUntil(t, func() bool { return srv.OpenChannels.Load() == 1 })
	waitUntil(t, func() bool { return brokerGoroutines() <= base })
	mustDial(t, b, "gw", target)
}
