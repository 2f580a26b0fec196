package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// Servers that are hostile or broken: they leave channel opens
// unanswered, open channels of their own, send global requests, stop
// reading, or speak something that is not SSH. (A changed host key is
// refused before anything is sent: TestChangedHostKeyRefused.)

// A profile's channel opens in flight are bounded: beyond the bound a
// flow is refused at once, an open whose flow gave up keeps its slot
// until the server answers, and other profiles are not affected.
func TestPendingOpensBounded(t *testing.T) {
	const limit = 4
	srv, p := keyedServerWith(t, brokertest.Options{})
	p.MaxPendingOpens = limit
	_, other := keyedServerWith(t, brokertest.Options{})
	other.Name = "other"
	other.MaxPendingOpens = limit
	b := newBroker(t, Options{}, p, other)
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target)

	srv.HoldOpens.Store(true)
	// Flows whose application was refused at the dial timeout.
	for range limit {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := b.Dial(ctx, "gw", target)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dial while the server holds opens: %v, want the deadline", err)
		}
	}
	waitUntil(t, func() bool { return srv.Held() == limit })
	if n := statusOf(b, "gw").PendingOpens; n != limit {
		t.Errorf("PendingOpens = %d, want %d (abandoned opens keep their slots)", n, limit)
	}

	// The next is refused at once, without waiting for its context.
	_, err := b.Dial(context.Background(), "gw", target)
	var busy *PendingOpensError
	if !errors.As(err, &busy) || busy.Limit != limit || !strings.Contains(err.Error(), "refused the one to "+target) {
		t.Fatalf("dial beyond the bound: %v, want a *PendingOpensError", err)
	}
	var se *SetupError
	if errors.As(err, &se) {
		t.Errorf("the refusal is a SetupError: fallback_direct would send the flow in the clear")
	}
	if n := statusOf(b, "gw").OpensRefused; n != 1 {
		t.Errorf("OpensRefused = %d, want 1", n)
	}
	if srv.Held() != limit {
		t.Errorf("the refused flow reached the server: %d opens held", srv.Held())
	}
	mustDial(t, b, "other", target) // another profile is not affected

	srv.HoldOpens.Store(false)
	srv.ReleaseHeld()
	waitUntil(t, func() bool { return statusOf(b, "gw").PendingOpens == 0 })
	// The server opened the abandoned channels; they were closed at once.
	waitUntil(t, func() bool { return srv.OpenChannels.Load() == 1 })
	for range limit + 1 {
		mustDial(t, b, "gw", target)
	}
}

// A server that answers keepalives but never a channel open: each flow
// gets its error when its dial context ends, and once no open has been
// answered for OpenStallTimeout the connection is declared broken (the
// flows still waiting are reset) and the next flow reconnects.
func TestUnansweredOpensReplaceConnection(t *testing.T) {
	srv, p := keyedServerWith(t, brokertest.Options{})
	p.KeepaliveInterval = 40 * time.Millisecond
	p.OpenStallTimeout = 300 * time.Millisecond
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target)

	srv.HoldOpens.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	_, err := b.Dial(ctx, "gw", target)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial to a server that answers no open: %v, want the dial deadline", err)
	}
	// A flow that waits longer is reset with the connection, once its
	// one try on a fresh connection (which answers no open either) has
	// stalled too.
	_, err = b.Dial(context.Background(), "gw", target)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("a flow waiting on the stalled connection: %v, want ErrConnectionLost", err)
	}
	if e := b.Status()[0].Error; !strings.Contains(e, "answered none of") {
		t.Errorf("the profile's error %q does not say the server answered no open", e)
	}
	srv.HoldOpens.Store(false)
	mustDial(t, b, "gw", target)
	if n := srv.Logins.Load(); n != 3 {
		t.Errorf("%d logins, want 3 (the broken connection replaced, twice)", n)
	}
}

// An open answered late is not a stall: while the server answers some
// opens, others may wait (sshd's connect to a destination that drops
// SYNs) without the connection being closed.
func TestSlowOpenIsNotAStall(t *testing.T) {
	now := time.Now()
	var prof, lnk atomic.Int64
	o := pendingOpens{profile: &prof, link: &lnk}
	o.start(10)
	o.start(10)
	o.finish() // one answered: the other waits from now
	d, n := o.stalled(time.Now().Add(time.Minute))
	if n != 1 || d < time.Minute-time.Since(now) || d > time.Minute+time.Second {
		t.Errorf("stalled = %v, %d; want about a minute, 1", d, n)
	}
	o.finish()
	if d, n := o.stalled(time.Now().Add(time.Hour)); d != 0 || n != 0 {
		t.Errorf("stalled with none waiting = %v, %d", d, n)
	}
	o.start(10)
	o.end()
	if prof.Load() != 0 || lnk.Load() != 0 {
		t.Errorf("an ended session's opens still count: %d, %d", prof.Load(), lnk.Load())
	}
	for range 3 {
		o.start(2) // the ended session counts nothing, and refuses nothing
	}
	if prof.Load() != 0 {
		t.Errorf("an ended session counted opens: %d", prof.Load())
	}
}

// Channels the server opens are refused and logged at debug; the
// connection goes on carrying flows.
func TestServerOpenedChannelsRefused(t *testing.T) {
	types := []string{"forwarded-tcpip", "x11", "auth-agent@openssh.com", "session"}
	type refusal struct {
		typ string
		err error
	}
	got := make(chan refusal, len(types))
	srv, p := keyedServerWith(t, brokertest.Options{Connected: func(sc *ssh.ServerConn) {
		for _, typ := range types {
			ch, reqs, err := sc.OpenChannel(typ, nil)
			if err == nil {
				go ssh.DiscardRequests(reqs)
				ch.Close()
			}
			got <- refusal{typ, err}
		}
		sc.Wait()
	}})
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	b := newBroker(t, Options{Log: log}, p)
	target := brokertest.Echo(t)
	c := mustDial(t, b, "gw", target)
	for range types {
		r := <-got
		var oce *ssh.OpenChannelError
		if !errors.As(r.err, &oce) || oce.Reason != ssh.Prohibited {
			t.Errorf("server's %s channel: %v, want refused as prohibited", r.typ, r.err)
		}
	}
	roundTrip(t, c, "still carrying")
	mustDial(t, b, "gw", target)
	if n := statusOf(b, "gw").ServerChannelsRefused; n != uint64(len(types)) {
		t.Errorf("ServerChannelsRefused = %d, want %d", n, len(types))
	}
	logged := map[string]bool{}
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "refusing a channel the server opened") {
			if e.Level != logrus.DebugLevel {
				t.Errorf("logged at %v, want debug", e.Level)
			}
			logged[e.Data["channel_type"].(string)] = true
		}
	}
	for _, typ := range types {
		if !logged[typ] {
			t.Errorf("the refused %s channel was not logged", typ)
		}
	}
	if n := srv.Logins.Load(); n != 1 {
		t.Errorf("%d logins, want the one connection throughout", n)
	}
}

// Global requests of the server are answered with failure and nothing
// else, whatever they are; and the client asks the server for nothing
// but direct-tcpip channels and keepalives (no session, so no agent or
// X11 forwarding; no remote forwarding).
func TestGlobalRequestsFailAndNothingElseAsked(t *testing.T) {
	types := []string{"tcpip-forward", "hostkeys-prove-00@openssh.com", "no-such-request@example.com", "keepalive@openssh.com"}
	type answer struct {
		typ     string
		ok      bool
		payload []byte
		err     error
	}
	got := make(chan answer, len(types))
	srv, p := keyedServerWith(t, brokertest.Options{Connected: func(sc *ssh.ServerConn) {
		for _, typ := range types {
			ok, payload, err := sc.SendRequest(typ, true, []byte("payload"))
			got <- answer{typ, ok, payload, err}
		}
		sc.SendRequest("hostkeys-00@openssh.com", false, nil) // no reply wanted
		sc.Wait()
	}})
	p.KeepaliveInterval = 20 * time.Millisecond
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c := mustDial(t, b, "gw", target)
	for range types {
		a := <-got
		if a.err != nil || a.ok || len(a.payload) != 0 {
			t.Errorf("global request %s answered %v, %q, %v; want a bare failure", a.typ, a.ok, a.payload, a.err)
		}
	}
	waitUntil(t, func() bool { return slices.Contains(srv.Asked(), "global keepalive@openssh.com") })
	roundTrip(t, c, "after the requests")
	for _, a := range srv.Asked() {
		if a != "channel direct-tcpip" && a != "global keepalive@openssh.com" {
			t.Errorf("the client asked the server for %q", a)
		}
	}
}

// stallingRelay forwards TCP until stalled, then reads nothing more from
// either side: the server has stopped reading (and sending), so the
// client's writes block once the socket buffers are full.
//
// garbage writes bytes to the clients as if the server had sent them.
type stallingRelay struct {
	ln      net.Listener
	stalled chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	clients []net.Conn
}

func newStallingRelay(t *testing.T, target string) *stallingRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &stallingRelay{ln: ln, stalled: make(chan struct{})}
	done := make(chan struct{})
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		close(done)
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		r.wg.Wait()
	})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, up)
			mu.Unlock()
			r.mu.Lock()
			r.clients = append(r.clients, c)
			r.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer r.wg.Done()
				buf := make([]byte, 32<<10)
				for {
					select {
					case <-r.stalled:
						<-done
						return
					default:
					}
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					select {
					case <-r.stalled: // what was read is lost too
						<-done
						return
					default:
					}
					dst.Write(buf[:n])
				}
			}
			r.wg.Add(2)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return r
}

func (r *stallingRelay) port() int { return r.ln.Addr().(*net.TCPAddr).Port }
func (r *stallingRelay) stall()    { r.once.Do(func() { close(r.stalled) }) }

func (r *stallingRelay) garbage(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.clients {
		c.Write(b)
	}
}

// A server that sends garbage once the connection is up (after key
// exchange and login: the packets no longer decrypt): the connection is
// dropped with the cipher's error, its flows reset, and the next flow
// connects anew.
func TestGarbageAfterKeyExchange(t *testing.T) {
	srv, p := keyedServerWith(t, brokertest.Options{})
	relay := newStallingRelay(t, srv.Addr)
	p.Port = relay.port()
	p.KnownHosts = []string{knownHostsFor(t, srv, relay.port())}
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c := mustDial(t, b, "gw", target)
	reads := parkReader(c)
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(i*7 + 3)
	}
	relay.garbage(junk)
	for r := range reads {
		if r.err != nil {
			if !errors.Is(r.err, ErrConnectionLost) {
				t.Fatalf("the flow read %v, want ErrConnectionLost", r.err)
			}
			break
		}
	}
	waitUntil(t, func() bool { return !statusOf(b, "gw").Up })
	e := b.Status()[0].Error
	t.Log(e)
	if !strings.Contains(e, "lost: ") {
		t.Errorf("the profile's error %q does not say why the connection was lost", e)
	}
	mustDial(t, b, "gw", target)
	if n := srv.Logins.Load(); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
}

// A server that stops reading: the flow's writes block, the keepalives
// (whose own writes block too) still find the server silent, and the
// connection is closed: the blocked write and the parked read both fail
// with ErrConnectionLost.
func TestServerThatStopsReading(t *testing.T) {
	srv, p := keyedServerWith(t, brokertest.Options{})
	relay := newStallingRelay(t, srv.Addr)
	p.Port = relay.port()
	p.KnownHosts = []string{knownHostsFor(t, srv, relay.port())}
	p.KeepaliveInterval = 50 * time.Millisecond
	p.KeepaliveCount = 3
	b := newBroker(t, Options{}, p)
	c := mustDial(t, b, "gw", brokertest.Echo(t))
	reads := parkReader(c)
	relay.stall()

	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
	}()
	select {
	case err := <-wrote:
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("the blocked write failed with %v, want ErrConnectionLost", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the write to a server that stopped reading was not failed within 20 s")
	}
	for r := range reads {
		if r.err != nil {
			if !errors.Is(r.err, ErrConnectionLost) {
				t.Fatalf("the parked read failed with %v, want ErrConnectionLost", r.err)
			}
			break
		}
	}
	if e := b.Status()[0].Error; !strings.Contains(e, "stopped answering keepalives") {
		t.Errorf("the profile's error %q does not name the keepalives", e)
	}
}

// knownHostsFor writes a known_hosts file with srv's key for port (a
// relay in front of it).
func knownHostsFor(t *testing.T, srv *brokertest.Server, port int) string {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := strings.Replace(srv.KnownHostsLine(), "]:"+strconv.Itoa(srv.Port())+" ", "]:"+strconv.Itoa(port)+" ", 1)
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return kh
}

// rawServer accepts TCP connections and runs serve on each: a server
// that speaks whatever a test needs instead of SSH. It returns the port.
func rawServer(t *testing.T, serve func(c net.Conn)) int {
	t.Helper()
	addr := brokertest.Serve(t, func(c net.Conn) {
		serve(c)
		// Hold the connection open: the client must not wait for its
		// end to see the fault.
		io.Copy(io.Discard, c)
	})
	return int(netip.MustParseAddrPort(addr).Port())
}

// Servers that do not speak SSH properly: each attempt fails with an
// error that says what was wrong, without waiting for the connect
// timeout and without allocating what the server claims.
func TestMalformedServers(t *testing.T) {
	const version = "SSH-2.0-OpenSSH_9.6\r\n"
	for _, tc := range []struct {
		name  string
		serve func(c net.Conn)
		want  string
	}{
		{"oversized version banner", func(c net.Conn) {
			c.Write([]byte("SSH-2.0-" + strings.Repeat("x", 100<<10) + "\r\n"))
		}, "overflow reading version string"},
		{"endless lines before the version", func(c net.Conn) {
			line := []byte(strings.Repeat("y", 200) + "\r\n")
			for range 2000 {
				if _, err := c.Write(line); err != nil {
					return
				}
			}
		}, "overflow reading version string"},
		{"packet length beyond the limit", func(c net.Conn) {
			c.Write([]byte(version))
			c.Write([]byte{0xff, 0xff, 0xff, 0xf0, 4, 20}) // a 4 GiB KEXINIT, unencrypted
			c.Write(make([]byte, 64<<10))
		}, "packet too large"},
		{"garbage instead of key exchange", func(c net.Conn) {
			c.Write([]byte(version))
			c.Write([]byte{0, 0, 0, 12, 4, 99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14})
		}, "ssh: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := rawServer(t, tc.serve)
			_, p := server(t, brokertest.Options{})
			p.Port = port
			b := newBroker(t, Options{}, p)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout/2)
			defer cancel()
			_, err := b.Dial(ctx, "gw", "10.0.0.1:80")
			runtime.ReadMemStats(&after)
			var se *SetupError
			if !errors.As(err, &se) || ctx.Err() != nil {
				t.Fatalf("dial: %v (context: %v), want a SetupError before the deadline", err, ctx.Err())
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Errorf("the attempt allocated %d MiB", alloc>>20)
			}
		})
	}
}

// A flow whose channel open is in flight when the connection dies (the
// server crashed, a proxy on the way was killed) has sent nothing yet: it
// gets one fresh connection instead of a refusal for a loss it had no part
// in. The second connection serves it.
func TestOpenRetriedWhenConnectionDiesUnderIt(t *testing.T) {
	srv, p := keyedServerWith(t, brokertest.Options{})
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target)

	srv.HoldOpens.Store(true)
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := b.Dial(context.Background(), "gw", target)
		done <- result{c, err}
	}()
	waitUntil(t, func() bool { return srv.Held() == 1 })
	srv.HoldOpens.Store(false)
	srv.Drop()
	r := <-done
	if r.err != nil {
		t.Fatalf("a flow whose open was in flight when the connection died: %v, want a fresh connection", r.err)
	}
	defer r.c.Close()
	roundTrip(t, r.c, "again")
	if n := srv.Logins.Load(); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
}
