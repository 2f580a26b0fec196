package router

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/events"
	"github.com/shunt-dev/shunt/router/routertest"
	"github.com/shunt-dev/shunt/state"
)

// loopUpstreams is a tunnel and direct dialer whose connections are
// loopback TCP: the test gets the far end of each (the server) from far.
type loopUpstreams struct {
	t     testing.TB
	far   chan net.Conn
	mu    sync.Mutex
	dials []string
}

func newLoopUpstreams(t testing.TB) *loopUpstreams {
	return &loopUpstreams{t: t, far: make(chan net.Conn, 64)}
}

func (u *loopUpstreams) dial(what string) (net.Conn, error) {
	u.mu.Lock()
	u.dials = append(u.dials, what)
	u.mu.Unlock()
	near, far := tcpPair(u.t)
	u.far <- far
	return near, nil
}

func (u *loopUpstreams) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	return u.dial(profile + "/" + addr)
}

func (u *loopUpstreams) DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error) {
	return u.dial(profile + "@" + server + "/" + addr)
}

func (u *loopUpstreams) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return u.dial("direct/" + addr)
}

// splices are the two shapes of the application's side a flow can have:
// a plain TCP connection (a goroutine copies each way), and one that reads
// without blocking and resets itself (as netstack's flows do: the pump).
var splices = []struct {
	name string
	wrap func(net.Conn) net.Conn
}{
	{"copy", func(c net.Conn) net.Conn { return c }},
	{"pump", func(c net.Conn) net.Conn { return &abortPoll{pollConn: newPollConn(c), aborted: make(chan struct{})} }},
}

// openFlow sets up a flow from src to dst through r, whose upstreams come
// from u; it returns the application's end and the server's.
func openFlow(t testing.TB, r *Router, u *loopUpstreams, wrap func(net.Conn) net.Conn, src, dst string) (app, server net.Conn) {
	t.Helper()
	r.HandleTCP(context.Background(), netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), "", func() (net.Conn, error) {
		var near net.Conn
		app, near = tcpPair(t)
		return wrap(near), nil
	})
	if app == nil {
		t.Fatalf("flow to %s was not accepted", dst)
	}
	select {
	case server = <-u.far:
	default:
		t.Fatalf("flow to %s was not dialled", dst)
	}
	return app, server
}

// endFlow ends a flow cleanly from both sides.
func endFlow(t testing.TB, app, server net.Conn) {
	t.Helper()
	app.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, server); err != nil {
		t.Errorf("server: %v", err)
	}
	server.Close()
	if _, err := io.Copy(io.Discard, app); err != nil {
		t.Errorf("application: %v", err)
	}
	app.Close()
}

type fakeNames map[netip.Addr][]string

func (f fakeNames) Names(a netip.Addr) []string { return f[a] }

var flowRules = []Rule{
	{Name: "nobody", Users: []uint32{4242}, Action: Block}, // makes the router look owners up
	{Name: "mail", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "paper"},
	{Name: "hosts", Destinations: pfx("10.3.0.0/24"), Action: Tunnel, Profile: "own", HostFromApplication: true},
	{Destinations: pfx("10.4.0.0/24"), Action: Block},
}

// The table lists the flows being set up and running, in id order, with
// what the router knows about them; they leave it when they end.
func TestFlowTable(t *testing.T) {
	u := newLoopUpstreams(t)
	log, hook := test.NewNullLogger()
	curl := &Owner{UID: 1000, Exe: "/usr/bin/curl", Name: "curl"}
	r := New(flowRules, Options{
		Tunnels: u, Direct: u, Log: log,
		Owners: fakeOwners{curl},
		Names:  fakeNames{netip.MustParseAddr("10.1.0.5"): {"mail.corp.example", "imap.corp.example"}},
	})
	before := time.Now()
	app1, srv1 := openFlow(t, r, u, splices[0].wrap, "192.0.2.1:5001", "10.1.0.5:993")
	app2, srv2 := openFlow(t, r, u, splices[1].wrap, "192.0.2.1:5002", "10.3.0.9:22")
	app3, srv3 := openFlow(t, r, u, splices[0].wrap, "[2001:db8::1]:5003", "[2001:db8::9]:443")
	r.HandleTCP(context.Background(), src, ap("10.4.0.1:80"), "", func() (net.Conn, error) {
		t.Fatal("a blocked flow was accepted")
		return nil, nil
	})

	got := r.Flows()
	want := []state.Flow{
		{ID: 1, Src: "192.0.2.1:5001", Dst: "10.1.0.5:993", Name: "mail.corp.example", App: "/usr/bin/curl", UID: 1000,
			Rule: `#2 "mail"`, Action: "tunnel", Profile: "paper", State: state.FlowOpen},
		{ID: 2, Src: "192.0.2.1:5002", Dst: "10.3.0.9:22", App: "/usr/bin/curl", UID: 1000,
			Rule: `#3 "hosts"`, Action: "tunnel", Profile: "own", Server: "10.3.0.9", State: state.FlowOpen},
		{ID: 3, Src: "[2001:db8::1]:5003", Dst: "[2001:db8::9]:443", App: "/usr/bin/curl", UID: 1000,
			Action: "direct", State: state.FlowOpen},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(state.Flow{}, "Started")); diff != "" {
		t.Errorf("Flows() (-want +got):\n%s", diff)
	}
	for _, f := range got {
		if f.Started.Before(before) || f.Started.After(time.Now()) {
			t.Errorf("flow %d started at %v, not during the test", f.ID, f.Started)
		}
	}
	for _, e := range hook.AllEntries() {
		if e.Message == "flow open" && e.Data["flow"] == nil {
			t.Errorf("log line %q has no flow id: %v", e.Message, e.Data)
		}
	}

	endFlow(t, app2, srv2)
	waitUntil(t, "flow 2 to leave the table", func() bool { return len(r.Flows()) == 2 })
	if f := r.Flows(); f[0].ID != 1 || f[1].ID != 3 {
		t.Errorf("flows left: %d and %d, want 1 and 3", f[0].ID, f[1].ID)
	}
	endFlow(t, app1, srv1)
	endFlow(t, app3, srv3)
	r.Wait()
	if f := r.Flows(); len(f) != 0 {
		t.Errorf("flows left after all ended: %+v", f)
	}
}

// Ids are handed out before flows register, so flows may register out of
// order: the table keeps id order, and unlinks from anywhere.
func TestFlowTableOrder(t *testing.T) {
	var tab flowTable
	tab.init()
	ids := func() []uint64 {
		var out []uint64
		for fe := tab.head; fe != nil; fe = fe.next {
			out = append(out, fe.id)
		}
		var back []uint64
		for fe := tab.tail; fe != nil; fe = fe.prev {
			back = append([]uint64{fe.id}, back...)
		}
		if fmt.Sprint(out) != fmt.Sprint(back) {
			t.Fatalf("forward %v, backward %v", out, back)
		}
		return out
	}
	entries := map[uint64]*flowEntry{}
	for _, id := range []uint64{3, 1, 2, 5, 4, 7, 6} {
		entries[id] = &flowEntry{id: id, d: Decision{Index: -1}}
		tab.add(entries[id])
	}
	if got := fmt.Sprint(ids()); got != "[1 2 3 4 5 6 7]" {
		t.Fatalf("table order %s", got)
	}
	for _, id := range []uint64{1, 7, 4} {
		tab.opened(entries[id])
		tab.remove(entries[id], false)
	}
	tab.remove(entries[2], true)
	if got := fmt.Sprint(ids()); got != "[3 5 6]" {
		t.Fatalf("after removals: %s", got)
	}
	if len(tab.byID) != 3 {
		t.Errorf("%d flows by id, want 3", len(tab.byID))
	}
}

// Byte counts grow while the flow runs, as the splice copies, and are
// exact at the end: in the table, the close event and the totals.
func TestFlowBytesWhileRunning(t *testing.T) {
	for _, sp := range splices {
		t.Run(sp.name, func(t *testing.T) {
			u := newLoopUpstreams(t)
			var bus events.Bus
			sub := bus.Subscribe(10)
			defer sub.Close()
			log, _ := test.NewNullLogger()
			r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})
			app, server := openFlow(t, r, u, sp.wrap, "192.0.2.1:5001", "10.1.0.5:993")
			if e := <-sub.C(); e.Event != state.EventOpen {
				t.Fatalf("first event %q, want open", e.Event)
			}
			flow := func() state.Flow {
				f := r.Flows()
				if len(f) != 1 {
					t.Fatalf("%d flows in the table, want 1", len(f))
				}
				return f[0]
			}
			var sent, received int64
			for step := range 4 {
				out := make([]byte, 100_000*(step+1))
				back := make([]byte, 7_000*(step+1))
				go app.Write(out)
				if _, err := io.ReadFull(server, make([]byte, len(out))); err != nil {
					t.Fatal(err)
				}
				go server.Write(back)
				if _, err := io.ReadFull(app, make([]byte, len(back))); err != nil {
					t.Fatal(err)
				}
				sent += int64(len(out))
				received += int64(len(back))
				// The bytes are there; the splice counts each write as
				// it returns.
				waitUntil(t, fmt.Sprintf("the table to count %d/%d bytes", sent, received), func() bool {
					f := flow()
					if f.Sent > sent || f.Received > received {
						t.Fatalf("counted %d/%d bytes, more than the %d/%d copied", f.Sent, f.Received, sent, received)
					}
					return f.Sent == sent && f.Received == received
				})
				c := r.Counters()
				if len(c) != 1 || c[0].Sent != sent || c[0].Received != received || c[0].Opened != 1 || c[0].Closed != 0 {
					t.Fatalf("Counters() = %+v while the flow runs, want 1 opened, %d/%d bytes", c, sent, received)
				}
			}
			endFlow(t, app, server)
			r.Wait()
			e := <-sub.C()
			if e.Event != state.EventClose || e.Flow.Sent != sent || e.Flow.Received != received || e.Reason != reasonClosed {
				t.Errorf("close event %q %q with %d/%d bytes, want close, closed, %d/%d", e.Event, e.Reason, e.Flow.Sent, e.Flow.Received, sent, received)
			}
			want := []Counter{{Rule: `#2 "mail"`, Action: Tunnel, Profile: "paper", Opened: 1, Closed: 1, Sent: sent, Received: received}}
			if diff := cmp.Diff(want, r.Counters()); diff != "" {
				t.Errorf("Counters() after the flow (-want +got):\n%s", diff)
			}
		})
	}
}

// Snapshots taken all through a bulk transfer see the counts only grow,
// and the last one after it is exact.
func TestFlowBytesBulkWhileRead(t *testing.T) {
	for _, sp := range splices {
		t.Run(sp.name, func(t *testing.T) {
			u := newLoopUpstreams(t)
			log, _ := test.NewNullLogger()
			r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log})
			app, server := openFlow(t, r, u, sp.wrap, "192.0.2.1:5001", "10.1.0.5:993")
			data := make([]byte, 16<<20)
			rand.Read(data)
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				var last int64
				for {
					select {
					case <-stop:
						return
					default:
					}
					f := r.Flows()
					if len(f) != 1 {
						continue
					}
					if f[0].Sent < last {
						t.Errorf("count went back from %d to %d", last, f[0].Sent)
					}
					last = f[0].Sent
					r.Counters()
				}
			}()
			go func() {
				app.Write(data)
				app.(*net.TCPConn).CloseWrite()
			}()
			// Read the first half, and see the count there before the
			// rest is read.
			got := make([]byte, len(data))
			half := len(data) / 2
			if _, err := io.ReadFull(server, got[:half]); err != nil {
				t.Fatal(err)
			}
			// The splice counts a write once it returns, which may be a
			// moment after the server has read its bytes; the rest is not
			// read until the count has caught up.
			waitUntil(t, fmt.Sprintf("at least %d bytes counted mid-transfer", half), func() bool {
				f := r.Flows()
				return len(f) == 1 && f[0].Sent >= int64(half)
			})
			if _, err := io.ReadFull(server, got[half:]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("data corrupted")
			}
			waitUntil(t, "the full count", func() bool { f := r.Flows(); return len(f) == 1 && f[0].Sent == int64(len(data)) })
			close(stop)
			<-stopped
			endFlow(t, app, server)
			r.Wait()
			if c := r.Counters(); len(c) != 1 || c[0].Sent != int64(len(data)) {
				t.Errorf("Counters() = %+v, want %d bytes sent", c, len(data))
			}
		})
	}
}

// Many flows open, run and close at once while others read the table,
// the totals and reset flows: the race detector watches, and at the end
// every flow is accounted for.
func TestFlowTableConcurrent(t *testing.T) {
	d := &routertest.Dialer{}
	var bus events.Bus
	sub := bus.Subscribe(1)
	defer sub.Close()
	log, _ := test.NewNullLogger()
	r := New([]Rule{{Name: "all", Action: Tunnel, Profile: "gw"}}, Options{Tunnels: d, Direct: d, Log: log, Events: &bus})
	const flows = 200
	var wg sync.WaitGroup
	for i := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.HandleTCP(context.Background(), src, dstN(i), "", appConn)
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var resets sync.Map
	for w := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				fs := r.Flows()
				for j := 1; j < len(fs); j++ {
					if fs[j-1].ID >= fs[j].ID {
						t.Errorf("Flows() out of order: %d before %d", fs[j-1].ID, fs[j].ID)
					}
				}
				r.Counters()
				if w == 0 && len(fs) > 0 && i%7 == 0 {
					id := fs[len(fs)/2].ID
					if r.CloseFlow(id) {
						if _, again := resets.LoadOrStore(id, true); again {
							t.Errorf("flow %d reset twice", id)
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	r.Wait()
	close(stop)
	readers.Wait()
	if f := r.Flows(); len(f) != 0 {
		t.Fatalf("%d flows left in the table", len(f))
	}
	c := r.Counters()
	if len(c) != 1 {
		t.Fatalf("Counters() = %+v, want one row", c)
	}
	if c[0].Opened+c[0].Refused != flows || c[0].Closed != c[0].Opened {
		t.Errorf("Counters() = %+v: want %d flows opened or refused, all opened closed", c[0], flows)
	}
	if sub.Dropped() == 0 {
		t.Error("a subscriber that never reads lost no events")
	}
}

// CloseFlow resets the flow it names and no other: its application sees
// a reset (not a clean end), its upstream is closed, the others run on.
func TestCloseFlowResets(t *testing.T) {
	for _, sp := range splices {
		t.Run(sp.name, func(t *testing.T) {
			u := newLoopUpstreams(t)
			var bus events.Bus
			sub := bus.Subscribe(20)
			defer sub.Close()
			log, hook := test.NewNullLogger()
			r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})
			type flow struct{ app, server net.Conn }
			var fs []flow
			for i := range 3 {
				app, server := openFlow(t, r, u, sp.wrap, fmt.Sprintf("192.0.2.1:%d", 5001+i), "10.1.0.5:993")
				fs = append(fs, flow{app, server})
			}
			// Some traffic first, so the reset comes mid-flow.
			for _, f := range fs {
				f.app.Write([]byte("ping"))
				io.ReadFull(f.server, make([]byte, 4))
			}
			victim := r.Flows()[1].ID
			if !r.CloseFlow(victim) {
				t.Fatalf("CloseFlow(%d) = false", victim)
			}
			_, err := fs[1].app.Read(make([]byte, 1))
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the application of the reset flow read %v, want ECONNRESET", err)
			}
			if _, err := io.Copy(io.Discard, fs[1].server); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the upstream of the reset flow read %v, want its end", err)
			}
			waitUntil(t, "the reset flow to leave the table", func() bool { return len(r.Flows()) == 2 })
			if r.CloseFlow(victim) {
				t.Error("a second CloseFlow of the same flow says it reset it")
			}
			if r.CloseFlow(999) {
				t.Error("CloseFlow of a flow that never was says it reset it")
			}
			for i, f := range []flow{fs[0], fs[2]} {
				f.app.Write([]byte("pong"))
				b := make([]byte, 4)
				if _, err := io.ReadFull(f.server, b); err != nil || string(b) != "pong" {
					t.Errorf("flow %d after the reset of another: %q, %v", i, b, err)
				}
				f.server.Write([]byte("back"))
				if _, err := io.ReadFull(f.app, b); err != nil || string(b) != "back" {
					t.Errorf("flow %d after the reset of another: %q, %v", i, b, err)
				}
				endFlow(t, f.app, f.server)
			}
			fs[1].app.Close()
			fs[1].server.Close()
			r.Wait()
			reasons := map[uint64]string{}
			for range 6 {
				e := <-sub.C()
				if e.Event == state.EventClose {
					reasons[e.Flow.ID] = e.Reason
				}
			}
			if reasons[victim] != reasonReset || len(reasons) != 3 {
				t.Errorf("close reasons %v, want %q for flow %d and %q for the others", reasons, reasonReset, victim, reasonClosed)
			}
			logged := false
			for _, e := range hook.AllEntries() {
				logged = logged || e.Message == "flow reset on request" && e.Data["flow"] == victim
			}
			if !logged {
				t.Error("the reset was not logged with the flow's id")
			}
			c := r.Counters()
			if len(c) != 1 || c[0].Opened != 3 || c[0].Closed != 3 {
				t.Errorf("Counters() = %+v, want 3 opened and closed", c)
			}
		})
	}
}

// A flow reset while it waits for its upstream is refused: its
// application's handshake is never completed (netstack then sends it a
// RST), and the dial is cut short.
func TestCloseFlowDuringSetup(t *testing.T) {
	d := &routertest.Dialer{Hang: func(routertest.Call) bool { return true }}
	var bus events.Bus
	sub := bus.Subscribe(10)
	defer sub.Close()
	log, _ := test.NewNullLogger()
	r := New([]Rule{{Name: "all", Action: Tunnel, Profile: "gw"}}, Options{Tunnels: d, Direct: d, Log: log, Events: &bus})
	returned := make(chan bool)
	go func() {
		accepted := false
		r.HandleTCP(context.Background(), src, ap("10.1.0.7:25"), "", func() (net.Conn, error) { accepted = true; return appConn() })
		returned <- accepted
	}()
	waitUntil(t, "the flow to wait for its upstream", func() bool { return d.Pending() == 1 })
	f := r.Flows()
	if len(f) != 1 || f[0].State != state.FlowSettingUp {
		t.Fatalf("Flows() = %+v, want one flow being set up", f)
	}
	if !r.CloseFlow(f[0].ID) {
		t.Fatal("CloseFlow of a flow being set up = false")
	}
	select {
	case accepted := <-returned:
		if accepted {
			t.Error("a flow reset during its set-up was accepted")
		}
	case <-time.After(time.Minute):
		t.Fatal("the set-up went on waiting for its upstream after the reset")
	}
	if f := r.Flows(); len(f) != 0 {
		t.Errorf("Flows() = %+v after the refusal", f)
	}
	e := <-sub.C()
	if e.Event != state.EventClose || e.Reason != reasonReset || e.Flow.State != state.FlowClosed {
		t.Errorf("event %q %q (%s), want close, %q", e.Event, e.Reason, e.Flow.State, reasonReset)
	}
	if c := r.Counters(); len(c) != 1 || c[0].Refused != 1 || c[0].Opened != 0 {
		t.Errorf("Counters() = %+v, want one refused", c)
	}
}

// A flow's events come in order: open, then close with its totals; a
// refused flow has a close event that says why.
func TestFlowEvents(t *testing.T) {
	u := newLoopUpstreams(t)
	var bus events.Bus
	sub := bus.Subscribe(10)
	defer sub.Close()
	log, _ := test.NewNullLogger()
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})
	app, server := openFlow(t, r, u, splices[1].wrap, "192.0.2.1:5001", "10.1.0.5:993")
	app.Write([]byte("ping"))
	io.ReadFull(server, make([]byte, 4))
	server.Write([]byte("answer"))
	io.ReadFull(app, make([]byte, 6))
	endFlow(t, app, server)
	r.Wait()
	r.HandleTCP(context.Background(), src, ap("10.4.0.1:80"), "", appConn)

	open, closed, blocked := <-sub.C(), <-sub.C(), <-sub.C()
	if open.Event != state.EventOpen || open.Flow.State != state.FlowOpen || open.Flow.ID != 1 || open.Flow.Sent != 0 {
		t.Errorf("first event %q, flow %+v; want open, flow 1 open", open.Event, open.Flow)
	}
	if closed.Event != state.EventClose || closed.Flow.ID != 1 || closed.Flow.State != state.FlowClosed ||
		closed.Flow.Sent != 4 || closed.Flow.Received != 6 || closed.Reason != reasonClosed {
		t.Errorf("second event %q %q, flow %+v; want close, closed, flow 1 with 4/6 bytes", closed.Event, closed.Reason, closed.Flow)
	}
	if closed.Duration <= 0 || closed.Time.Before(open.Time) {
		t.Errorf("close event: duration %v at %v, open at %v", closed.Duration, closed.Time, open.Time)
	}
	if closed.Flow == open.Flow {
		t.Error("the close event shares its flow with the open event")
	}
	if blocked.Event != state.EventClose || blocked.Reason != reasonBlocked || blocked.Flow.Action != "block" || blocked.Flow.ID != 2 {
		t.Errorf("blocked flow's event %q %q, flow %+v", blocked.Event, blocked.Reason, blocked.Flow)
	}
	// The JSON names are the contract.
	b, _ := json.Marshal(closed)
	for _, key := range []string{`"event":"close"`, `"sent":4`, `"received":6`, `"reason":"closed"`, `"id":1`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("close event %s has no %s", b, key)
		}
	}

	// An upstream that fails: a close event with its error.
	f := &routertest.Dialer{Fail: failing(errors.New("ssh: connect failed"))}
	r = New(flowRules, Options{Tunnels: f, Direct: f, Log: log, Events: &bus})
	r.HandleTCP(context.Background(), src, ap("10.1.0.5:993"), "", appConn)
	if e := <-sub.C(); e.Event != state.EventClose || e.Reason != reasonUpstream+"ssh: connect failed" {
		t.Errorf("refused flow's event %q %q", e.Event, e.Reason)
	}
	if c := r.Counters(); len(c) != 1 || c[0].Refused != 1 || c[0].Profile != "paper" {
		t.Errorf("Counters() = %+v, want one refused of profile paper", c)
	}
}

// A subscriber that never reads loses events, counted, and holds nothing
// up: flows open, carry their data and close as if it were not there, and
// a subscriber that reads gets every event.
func TestSlowSubscriberDoesNotStallFlows(t *testing.T) {
	u := newLoopUpstreams(t)
	var bus events.Bus
	slow := bus.Subscribe(1)
	defer slow.Close()
	const flows = 30
	fast := bus.Subscribe(2*flows + 2)
	defer fast.Close()
	log, _ := test.NewNullLogger()
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})

	// A bulk transfer runs through all of it, and small flows come and go
	// meanwhile. If a publisher waited on the slow subscriber, this would
	// hang at the second event.
	traffic := make(chan error, 1)
	go func() {
		app, server := openFlow(t, r, u, splices[1].wrap, "192.0.2.1:4000", "10.1.0.5:993")
		data := make([]byte, 8<<20)
		rand.Read(data)
		go func() { app.Write(data); app.(*net.TCPConn).CloseWrite() }()
		bulk := make(chan []byte)
		go func() { b, _ := io.ReadAll(server); bulk <- b }()
		for i := range flows {
			a, s := openFlow(t, r, u, splices[i%2].wrap, fmt.Sprintf("192.0.2.1:%d", 5000+i), "10.2.0.1:80")
			a.Write([]byte("ping"))
			io.ReadFull(s, make([]byte, 4))
			endFlow(t, a, s)
		}
		got := <-bulk
		server.Close()
		io.Copy(io.Discard, app)
		app.Close()
		r.Wait()
		if !bytes.Equal(got, data) {
			traffic <- fmt.Errorf("bulk transfer: %d bytes arrived, not the %d sent", len(got), len(data))
			return
		}
		traffic <- nil
	}()
	select {
	case err := <-traffic:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the flows did not complete")
	}

	const total = 2 * (flows + 1)
	if d := slow.Dropped(); d != total-1 {
		t.Errorf("the slow subscriber dropped %d events, want %d", d, total-1)
	}
	if d := bus.Dropped(); d != total-1 {
		t.Errorf("the bus counted %d dropped, want %d", d, total-1)
	}
	if d := fast.Dropped(); d != 0 {
		t.Errorf("the fast subscriber dropped %d", d)
	}
	opened := map[uint64]bool{}
	for range total {
		e := <-fast.C()
		switch e.Event {
		case state.EventOpen:
			opened[e.Flow.ID] = true
		case state.EventClose:
			if !opened[e.Flow.ID] {
				t.Errorf("flow %d: close before open", e.Flow.ID)
			}
		}
	}
}

// Carrying data allocates nothing, with the flow table counting it and a
// listener for events: bulk both ways through a flow HandleTCP set up.
func TestFlowSpliceAllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items); go test without -race runs this")
	}
	u := newLoopUpstreams(t)
	var bus events.Bus
	sub := bus.Subscribe(10)
	defer sub.Close()
	log, _ := test.NewNullLogger()
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})
	app, server := openFlow(t, r, u, splices[0].wrap, "192.0.2.1:5001", "10.1.0.5:993")
	out, in := make([]byte, 64<<10), make([]byte, 64<<10)
	const runs = 200
	n := testing.AllocsPerRun(runs, func() {
		if _, err := app.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, in); err != nil {
			t.Fatal(err)
		}
		if _, err := server.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(app, in); err != nil {
			t.Fatal(err)
		}
	})
	if n > 0 {
		t.Errorf("64 KiB each way through a flow: %v allocations", n)
	}
	want := int64(runs+1) * int64(len(out)) // and the warm-up run
	waitUntil(t, "the table to count every byte", func() bool {
		f := r.Flows()
		return len(f) == 1 && f[0].Sent == want && f[0].Received == want
	})
	endFlow(t, app, server)
	r.Wait()
}

// BenchmarkFlows: a snapshot of 10,000 flows (and the totals, and the
// JSON `status --json` would send of them).
func BenchmarkFlows(b *testing.B) {
	log, _ := test.NewNullLogger()
	r := New(flowRules, Options{Log: log})
	rs := r.rules.Load()
	curl := &Owner{UID: 1000, Exe: "/usr/bin/curl", Name: "curl"}
	for i := range 10_000 {
		f := Flow{Src: netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(10000+i)), Dst: dstN(i), Owner: curl, Names: []string{"mail.corp.example"}}
		fe := &flowEntry{r: r, id: r.table.newID(), f: f, start: time.Now()}
		fe.d = rs.Decide(f)
		fe.rule = rs.label(fe.d.Index)
		fe.bytes.aToB.Store(int64(i) << 10)
		fe.bytes.bToA.Store(int64(i) << 12)
		r.table.add(fe)
		r.table.opened(fe)
	}
	b.Run("Flows", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(r.Flows()) != 10_000 {
				b.Fatal("flows missing")
			}
		}
	})
	b.Run("Counters", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Counters()
		}
	})
	b.Run("Flows+JSON", func(b *testing.B) {
		b.ReportAllocs()
		var size int
		for b.Loop() {
			j, err := json.Marshal(r.Flows())
			if err != nil {
				b.Fatal(err)
			}
			size = len(j)
		}
		b.ReportMetric(float64(size), "json-bytes")
	})
}
