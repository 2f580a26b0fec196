package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/state"
)

// recorder is an Events that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []state.Event
}

func (r *recorder) Active() bool { return true }

func (r *recorder) Publish(e state.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// states lists the states published for a profile (via: its
// host-from-application server), in order.
func (r *recorder) states(name, via string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Event == state.EventState && e.Profile.Name == name && e.Profile.Via == via {
			out = append(out, e.Profile.State)
		}
	}
	return out
}

// last is the last state event of a profile.
func (r *recorder) last(name string) state.Profile {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if e := r.events[i]; e.Event == state.EventState && e.Profile.Name == name && e.Profile.Via == "" {
			return *e.Profile
		}
	}
	return state.Profile{}
}

func (r *recorder) json(t *testing.T) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.Marshal(r.events)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func profileStatus(t *testing.T, b *Broker, name, via string) state.Profile {
	t.Helper()
	for _, p := range b.Status() {
		if p.Name == name && p.Via == via {
			return p
		}
	}
	t.Fatalf("no status for profile %q via %q in %+v", name, via, b.Status())
	return state.Profile{}
}

// A connect goes idle → connecting → connected, and Status says so, with
// the server, the route and the channels; bytes are counted each way
// while a transfer runs and stay counted after.
func TestStatusThroughConnect(t *testing.T) {
	srv, p, _ := keyedServer(t)
	rec := &recorder{}
	b := newBroker(t, Options{Events: rec}, p)
	server := fmt.Sprintf("127.0.0.1:%d", srv.Port())

	st := profileStatus(t, b, "gw", "")
	if st.State != state.Idle || st.Server != server || st.Route != "direct" || st.Connections != 0 || st.Since.IsZero() {
		t.Fatalf("before the first flow: %+v", st)
	}
	c := mustDial(t, b, "gw", brokertest.Echo(t)) // sends and receives "ping"
	if got, want := rec.states("gw", ""), []string{state.Connecting, state.Connected}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	st = profileStatus(t, b, "gw", "")
	if st.State != state.Connected || st.Server != server || st.Connections != 1 || st.Channels != 1 || st.Sent != 4 || st.Received != 4 || st.Error != "" {
		t.Fatalf("connected: %+v", st)
	}

	// 1 MiB each way in 32 KiB writes, counted while it runs: what came
	// back was sent, but for the write still under way.
	const size, chunk = 1 << 20, 32 << 10
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	go func() {
		for i := 0; i < size; i += chunk {
			if _, err := c.Write(data[i : i+chunk]); err != nil {
				return
			}
		}
	}()
	got := make([]byte, size/2)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	mid := profileStatus(t, b, "gw", "")
	if mid.Received < 4+size/2 || mid.Sent+chunk < mid.Received {
		t.Fatalf("during the transfer: sent %d, received %d; want at least %d received, and no more than sent", mid.Sent, mid.Received, 4+size/2)
	}
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitUntil(t, func() bool { return profileStatus(t, b, "gw", "").Channels == 0 })
	st = profileStatus(t, b, "gw", "")
	if st.Sent != 4+size || st.Received != 4+size || st.State != state.Connected {
		t.Fatalf("after the transfer: %+v, want %d bytes each way", st, 4+size)
	}
	if cs := b.Connections(); len(cs) != 1 || cs[0].Sent != 4+size || cs[0].Received != 4+size || !cs[0].Up || cs[0].State != state.Connected {
		t.Fatalf("connections: %+v", cs)
	}
	if len(rec.states("gw", "")) != 2 {
		t.Fatalf("a transfer changed the state: %v", rec.states("gw", ""))
	}
}

// A failed connect goes to backoff with the error, then back to idle when
// the backoff ends.
func TestStatusFailedConnect(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	rec := &recorder{}
	b := newBroker(t, Options{Events: rec}, Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: port})
	if _, err := b.Dial(context.Background(), "gw", "10.0.0.1:25"); err == nil {
		t.Fatal("connected to nothing")
	}
	waitUntil(t, func() bool { return len(rec.states("gw", "")) == 3 })
	if got, want := rec.states("gw", ""), []string{state.Connecting, state.Backoff, state.Idle}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	st := profileStatus(t, b, "gw", "")
	if !strings.Contains(st.Error, fmt.Sprintf("connect to SSH server 127.0.0.1:%d direct", port)) || strings.Contains(st.Error, "\n") {
		t.Fatalf("error %q, want the connect failure on one line", st.Error)
	}
	if st.State != state.Idle || st.Reconnects != 0 {
		t.Fatalf("after the backoff: %+v", st)
	}
}

// A lost connection is idle with the loss as its error; the next
// connection is a reconnect, and clears the error.
func TestStatusLostAndReconnected(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	b := f.broker(t, func(_ *Profile, o *Options) { o.Events = rec })
	target := brokertest.Echo(t)
	mustDial(t, b, "gw", target).Close()
	f.srv.Drop()
	waitUntil(t, func() bool { return profileStatus(t, b, "gw", "").State == state.Idle })
	if st := profileStatus(t, b, "gw", ""); !strings.Contains(st.Error, "SSH connection to 127.0.0.1") || !strings.Contains(st.Error, "lost") {
		t.Fatalf("after the loss: %+v", st)
	}
	mustDial(t, b, "gw", target)
	st := profileStatus(t, b, "gw", "")
	if st.State != state.Connected || st.Reconnects != 1 || st.Error != "" {
		t.Fatalf("after the reconnect: %+v", st)
	}
	if got, want := rec.states("gw", ""), []string{state.Connecting, state.Connected, state.Idle, state.Connecting, state.Connected}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
}

// Profiles come in config order, then host-from-application servers.
func TestStatusOrder(t *testing.T) {
	_, p, _ := keyedServer(t)
	var ps []Profile
	for _, n := range []string{"zeta", "alpha", "mid"} {
		q := p
		q.Name = n
		ps = append(ps, q)
	}
	b := newBroker(t, Options{}, ps...)
	c, err := b.DialVia(context.Background(), "alpha", "127.0.0.1", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for _, st := range b.Status() {
		got = append(got, st.Name+"@"+st.Via)
	}
	if want := []string{"zeta@", "alpha@", "mid@", "alpha@127.0.0.1"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// A host-from-application server shows in Status while it is used, and is
// forgotten once its connection has gone idle; one that failed is
// forgotten after the idle timeout too.
func TestViaPoolInStatusAndPruned(t *testing.T) {
	_, p, _ := keyedServer(t)
	p.Hosts = []string{"192.0.2.1"}
	p.IdleTimeout = 50 * time.Millisecond
	rec := &recorder{}
	b := newBroker(t, Options{Events: rec}, p)
	c, err := b.DialVia(context.Background(), "gw", "127.0.0.1", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "via")
	st := profileStatus(t, b, "gw", "127.0.0.1")
	if st.State != state.Connected || st.Channels != 1 || st.Sent != 3 || st.Received != 3 || !strings.HasPrefix(st.Server, "127.0.0.1:") {
		t.Fatalf("via server: %+v", st)
	}
	if own := profileStatus(t, b, "gw", ""); own.State != state.Idle || own.Channels != 0 {
		t.Fatalf("the profile's own connection: %+v", own)
	}
	time.Sleep(2 * p.IdleTimeout) // a channel keeps it, however long
	profileStatus(t, b, "gw", "127.0.0.1")
	c.Close()
	waitUntil(t, func() bool { return len(b.Status()) == 1 })

	var se *SetupError
	if _, err := b.DialVia(context.Background(), "gw", "127.0.0.2", "10.0.0.1:25"); !errors.As(err, &se) {
		t.Fatalf("no server at 127.0.0.2: %v", err)
	}
	waitUntil(t, func() bool { return slices.Contains(rec.states("gw", "127.0.0.2"), state.Backoff) })
	waitUntil(t, func() bool { return len(b.Status()) == 1 })

	// Forgotten means forgotten, not broken: it connects again.
	c, err = b.DialVia(context.Background(), "gw", "127.0.0.1", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "again")
	c.Close()
}

// A password prompt makes the state waiting-for-auth while it waits.
func TestStatusWaitingForAuth(t *testing.T) {
	_, p := server(t, brokertest.Options{Password: "right-pw-sekrit"})
	p.AuthMethods = []string{AuthPassword}
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	pr := &fakePrompter{answer: func(Question) (string, error) {
		asked <- struct{}{}
		<-release
		return "right-pw-sekrit", nil
	}}
	rec := &recorder{}
	b := newBroker(t, Options{Prompter: pr, Events: rec}, p)
	done := make(chan error, 1)
	go func() {
		c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	<-asked
	if st := profileStatus(t, b, "gw", ""); st.State != state.WaitingForAuth {
		t.Fatalf("while asked: %+v", st)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, want := rec.states("gw", ""), []string{state.Connecting, state.WaitingForAuth, state.Connecting, state.Connected}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
}

// Nothing secret in Status, its events or its errors: not what the user
// typed, not a proxy's password.
func TestStatusKeepsSecrets(t *testing.T) {
	_, p := server(t, brokertest.Options{Password: "right-pw-sekrit"})
	p.AuthMethods = []string{AuthPassword}
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	pr := answers(map[QuestionKind]string{Password: "wrong-pw-sekrit"})
	rec := &recorder{}
	proxied := p
	proxied.Name = "proxied"
	proxied.Proxy, _ = url.Parse("socks5://bob:proxy-pw-sekrit@127.0.0.1:1")
	b := newBroker(t, Options{Prompter: pr, Events: rec, Log: log}, p, proxied)
	_, err1 := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	_, err2 := b.Dial(context.Background(), "proxied", "10.0.0.1:25")
	if err1 == nil || err2 == nil {
		t.Fatalf("dials: %v, %v", err1, err2)
	}
	if st := profileStatus(t, b, "gw", ""); !strings.Contains(st.Error, "password refused 3 times") {
		t.Fatalf("status error %q", st.Error)
	}
	if st := profileStatus(t, b, "proxied", ""); !strings.Contains(st.Route, "socks5://bob:") || !strings.Contains(st.Error, "SOCKS5 proxy") {
		t.Fatalf("proxied status: %+v", st)
	}
	status, _ := json.Marshal(b.Status())
	text := string(status) + rec.json(t) + err1.Error() + err2.Error() + explanation(t, err1) + explanation(t, err2)
	for _, e := range hook.AllEntries() {
		s, _ := e.String()
		text += s
	}
	for _, secret := range []string{"wrong-pw-sekrit", "right-pw-sekrit", "proxy-pw-sekrit"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q appears in the status, an event, an error or the log", secret)
		}
	}
}

// A question is abandoned when the last flow waiting for its connection
// gives up, not before; the attempt's failure then is no reason for a
// backoff.
func TestQuestionAbandonedWhenEveryFlowGivesUp(t *testing.T) {
	_, p := server(t, brokertest.Options{Password: "pw"})
	p.AuthMethods = []string{AuthPassword}
	questions := make(chan Question, 1)
	pr := &fakePrompter{answer: func(q Question) (string, error) {
		questions <- q
		<-q.Abandoned
		return "", errors.New("withdrawn")
	}}
	rec := &recorder{}
	b := newBroker(t, Options{Prompter: pr, Events: rec}, p)
	l := b.set.Load().pools["gw"].links[0]
	dial := func(ctx context.Context) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := b.Dial(ctx, "gw", "10.0.0.1:25")
			done <- err
		}()
		return done
	}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	first := dial(ctx1)
	q := <-questions
	second := dial(ctx2)
	waitUntil(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.connecting != nil && l.connecting.waiters == 2
	})
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first flow: %v", err)
	}
	select {
	case <-q.Abandoned:
		t.Fatal("abandoned while a flow still waits")
	default:
	}
	cancel2()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second flow: %v", err)
	}
	select {
	case <-q.Abandoned:
	default:
		t.Fatal("not abandoned once every flow gave up")
	}
	waitUntil(t, func() bool { return profileStatus(t, b, "gw", "").State == state.Idle })
	if slices.Contains(rec.states("gw", ""), state.Backoff) {
		t.Fatalf("a withdrawn question caused a backoff: %v", rec.states("gw", ""))
	}
	// The next flow asks again at once.
	ctx3, cancel3 := context.WithCancel(context.Background())
	third := dial(ctx3)
	<-questions
	cancel3()
	<-third
}

// nullChannel is an ssh.Channel that reads zeros and swallows writes.
type nullChannel struct{}

func (nullChannel) Read(b []byte) (int, error)  { return len(b), nil }
func (nullChannel) Write(b []byte) (int, error) { return len(b), nil }
func (nullChannel) Close() error                { return nil }
func (nullChannel) CloseWrite() error           { return nil }
func (nullChannel) SendRequest(string, bool, []byte) (bool, error) {
	return false, nil
}
func (nullChannel) Stderr() io.ReadWriter { return nil }

// Counting a channel's bytes costs the data path no allocation.
func TestChannelCountingAllocationFree(t *testing.T) {
	var tr traffic
	c := &channelConn{ch: nullChannel{}, s: &session{transport: &watchedConn{}}, traffic: &tr}
	buf := make([]byte, 32<<10)
	allocs := testing.AllocsPerRun(1000, func() {
		c.Read(buf)
		c.Write(buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Read and Write", allocs)
	}
	if want := int64(1001 * len(buf)); tr.sent.Load() != want || tr.received.Load() != want {
		t.Fatalf("counted %d sent, %d received; want %d each", tr.sent.Load(), tr.received.Load(), want)
	}
}
