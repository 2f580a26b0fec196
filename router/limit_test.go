package router

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

// appConn is the application's side for accept: it sends a line, reads it
// back and closes.
func appConn() (net.Conn, error) {
	a, b := net.Pipe()
	go func() {
		a.Write([]byte("ping"))
		io.ReadFull(a, make([]byte, 4))
		a.Close()
	}()
	return b, nil
}

var src = netip.MustParseAddrPort("192.0.2.1:5000")

// Thousands of set-ups hanging on one destination: the ones over its share
// are refused at once (the handler returns without accepting), and a flow
// to another destination of the same profile is set up while they hang.
func TestLimitOneDestinationFloods(t *testing.T) {
	blackholed := netip.MustParseAddrPort("10.1.0.7:9")
	d := &routertest.Dialer{Hang: func(c routertest.Call) bool { return c.Addr == blackholed.String() }}
	log, hook := test.NewNullLogger()
	r := New([]Rule{{Name: "internal", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "gw"}},
		Options{Tunnels: d, Direct: d, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const flood = 6000
	var returned, accepted atomic.Int32
	var wg sync.WaitGroup
	for range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.HandleTCP(ctx, src, blackholed, "", func() (net.Conn, error) { accepted.Add(1); return appConn() })
			returned.Add(1)
		}()
	}
	share := int32(DefaultMaxSetupsPerDestination)
	waitUntil(t, "the flows over the destination's share to be refused", func() bool {
		return returned.Load() == flood-share && d.Pending() == int(share)
	})
	if n := len(d.Calls()); n != int(share) {
		t.Errorf("%d dials to the blackholed destination, want %d: refused flows must not be dialled", n, share)
	}

	// Another port of the same profile.
	ok := false
	r.HandleTCP(ctx, src, netip.MustParseAddrPort("10.1.0.7:993"), "", func() (net.Conn, error) { ok = true; return appConn() })
	if !ok {
		t.Fatal("a flow to another destination was not set up while one destination's set-ups hang")
	}
	if n := d.Pending(); n != int(share) {
		t.Errorf("%d set-ups to the blackholed destination pending after the other flow, want %d", n, share)
	}
	if accepted.Load() != 0 {
		t.Error("a flow to the blackholed destination was accepted")
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "refusing new flows") {
			warned++
			if e.Data["limit"] != "destination "+blackholed.String() {
				t.Errorf("the warning names %v, want the destination", e.Data["limit"])
			}
		}
	}
	if warned != 1 {
		t.Errorf("%d warnings about the flood, want one", warned)
	}
	cancel()
	wg.Wait()
	r.Wait()
	if n := r.setup.inFlight(); n != 0 {
		t.Errorf("%d set-ups still counted after every flow ended", n)
	}
	summed := false
	for _, e := range hook.AllEntries() {
		if e.Data["limit"] == "destination "+blackholed.String() && e.Data["refused"] == flood-int(share)-1 &&
			strings.Contains(e.Message, "more flows were refused while it was full") {
			summed = true
		}
	}
	if !summed {
		t.Error("the end of the flood was not logged with the count of flows refused after the first warning")
	}
}

// The upstream of a flow whose application handshake fails is closed.
func TestHandshakeFailureClosesUpstream(t *testing.T) {
	d := &routertest.Dialer{}
	log, _ := test.NewNullLogger()
	r := New([]Rule{{Name: "all", Action: Tunnel, Profile: "gw"}}, Options{Tunnels: d, Direct: d, Log: log})
	r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.1.0.7:25"), "", func() (net.Conn, error) {
		return nil, fmt.Errorf("netstack: 192.0.2.1:5000 did not complete the handshake")
	})
	if up := d.Conns(); len(up) != 1 || !up[0].Closed() {
		t.Fatal("the upstream of a flow whose handshake failed was not closed")
	}
	if n := r.setup.inFlight(); n != 0 {
		t.Errorf("%d set-ups still counted", n)
	}
}

// acquireN takes up to n slots for keys made by key(i) and says how many
// it got.
func acquireN(l *limiter, n int, key func(i int) setupKey) int {
	got := 0
	for i := range n {
		if l.acquire(key(i)) == nil {
			got++
		}
	}
	return got
}

func dstN(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 80)
}

// However the floods are spread, a new key finds room, and no key takes
// more than its share.
func TestLimiterShares(t *testing.T) {
	fresh := setupKey{profile: "other", dst: netip.MustParseAddrPort("192.0.2.200:1"), uid: 4242, hasUID: true}
	one := netip.MustParseAddrPort("10.0.0.1:9")
	tests := []struct {
		name  string
		flood func(l *limiter) int // what the floods got
		want  int
		also  setupKey // must still be admitted besides fresh
	}{
		{"one destination", func(l *limiter) int {
			return acquireN(l, 6000, func(int) setupKey { return setupKey{profile: "gw", dst: one} })
		}, DefaultMaxSetupsPerDestination, setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.0.0.1:10")}},
		{"one profile, many destinations", func(l *limiter) int {
			return acquireN(l, 6000, func(i int) setupKey { return setupKey{profile: "gw", dst: dstN(i)} })
		}, DefaultMaxSetupsPerProfile, setupKey{dst: netip.MustParseAddrPort("10.0.0.2:80")}},
		{"direct flows, many destinations", func(l *limiter) int {
			return acquireN(l, 6000, func(i int) setupKey { return setupKey{dst: dstN(i)} })
		}, DefaultMaxSetupsPerProfile, setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.0.0.2:80")}},
		{"four blackholed destinations in one profile", func(l *limiter) int {
			got := 0
			for round := range 6000 {
				got += acquireN(l, 1, func(int) setupKey {
					return setupKey{profile: "gw", dst: netip.AddrPortFrom(one.Addr(), uint16(round%4))}
				})
			}
			return got
			// Each may take a slot while it holds less than its profile's
			// room (2048 less the profile's): about 2048/5 each.
		}, 410 + 410 + 410 + 409, setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.0.0.1:10")}},
		{"one user, many profiles and destinations", func(l *limiter) int {
			return acquireN(l, 6000, func(i int) setupKey {
				return setupKey{profile: fmt.Sprint("p", i%3), dst: dstN(i), uid: 1000, hasUID: true}
			})
		}, DefaultMaxSetupsPerUser, setupKey{profile: "p0", dst: dstN(7000), uid: 1001, hasUID: true}},
		{"three profiles at once", func(l *limiter) int {
			return acquireN(l, 9000, func(i int) setupKey { return setupKey{profile: fmt.Sprint("p", i%3), dst: dstN(i)} })
		}, 3 * 1024, setupKey{dst: dstN(20000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimiter(Limits{})
			if got := tt.flood(l); got != tt.want {
				t.Errorf("the flood got %d set-ups, want %d", got, tt.want)
			}
			if free := DefaultMaxSetups - l.inFlight(); free <= 0 {
				t.Fatalf("nothing left free")
			}
			for _, k := range []setupKey{fresh, tt.also} {
				if r := l.acquire(k); r != nil {
					t.Errorf("%+v refused after the flood: %v", k, r)
				}
			}
		})
	}
}

func TestLimiterRefusalAndRelease(t *testing.T) {
	l := newLimiter(Limits{Total: 8, PerProfile: 8, PerUser: 8, PerDestination: 2})
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	k := setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.0.0.1:9")}
	for range 2 {
		if r := l.acquire(k); r != nil {
			t.Fatal(r)
		}
	}
	r := l.acquire(k)
	if r == nil {
		t.Fatal("a third set-up to a destination capped at 2 was admitted")
	}
	if !r.warn || r.what != "destination 10.0.0.1:9" || !strings.Contains(r.Error(), "has 2 flow set-ups in flight") {
		t.Errorf("first refusal: %+v (%v), want a warning naming the destination", r, r)
	}
	if r := l.acquire(k); r == nil || r.warn {
		t.Errorf("second refusal within limitLogEvery: %+v, want no warning", r)
	}
	now = now.Add(limitLogEvery)
	if r := l.acquire(k); r == nil || !r.warn || r.refused != 2 {
		t.Errorf("refusal after limitLogEvery: %+v, want a warning counting 2", r)
	}
	if ended := l.release(k); len(ended) != 0 {
		t.Errorf("release with a set-up left ended %v", ended)
	}
	if r := l.acquire(k); r != nil {
		t.Errorf("after a release: %v", r)
	}
	l.acquire(k) // refused, counted
	l.release(k)
	ended := l.release(k)
	if len(ended) != 1 || ended[0].refused != 1 || ended[0].what != "destination 10.0.0.1:9" {
		t.Errorf("last release ended %+v, want the destination with 1 refused", ended)
	}
	if n := l.inFlight(); n != 0 || len(l.dsts) != 0 || len(l.profiles) != 0 {
		t.Errorf("after every release: %d in flight, %d destinations, %d profiles kept", n, len(l.dsts), len(l.profiles))
	}
}

// A direct flow (no rule matches) connects with the kernel's timeout, not
// the tunnel's 30 s, and says so when it times out.
func TestDirectConnectTimeout(t *testing.T) {
	type seen struct {
		addr     string
		deadline time.Duration
	}
	dials := make(chan seen, 2)
	dialer := dialFunc(func(ctx context.Context, addr string) (net.Conn, error) {
		dl, _ := ctx.Deadline()
		dials <- seen{addr, time.Until(dl)}
		return nil, fmt.Errorf("unreachable")
	})
	rules := []Rule{{Name: "mail", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "gw"}}
	log, _ := test.NewNullLogger()
	r := New(rules, Options{Tunnels: dialer, Direct: dialer, ConnectTimeout: 131 * time.Second, Log: log})
	never := func() (net.Conn, error) { t.Error("accepted a flow whose dial failed"); return nil, io.EOF }
	r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.2.0.5:80"), "", never)
	r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.1.0.5:80"), "", never)
	direct, tunnel := <-dials, <-dials
	if direct.deadline <= DefaultDialTimeout || direct.deadline > 131*time.Second {
		t.Errorf("direct connect to %s had %v, want the kernel's 131 s", direct.addr, direct.deadline)
	}
	if tunnel.deadline > DefaultDialTimeout {
		t.Errorf("tunnel dial to %s had %v, want at most %v", tunnel.addr, tunnel.deadline, DefaultDialTimeout)
	}

	// A short kernel timeout bounds tunnels too: the application gives up
	// by then.
	r = New(rules, Options{Tunnels: dialer, Direct: dialer, ConnectTimeout: 7 * time.Second, Log: log})
	r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.1.0.5:80"), "", never)
	if s := <-dials; s.deadline > 7*time.Second {
		t.Errorf("tunnel dial with a 7 s kernel timeout had %v", s.deadline)
	}

	// The timeout, logged.
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	hang := dialFunc(func(ctx context.Context, addr string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() })
	r = New(rules, Options{Tunnels: hang, Direct: hang, ConnectTimeout: 20 * time.Millisecond, Log: log})
	r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.2.0.5:80"), "", never)
	var direct1, timedOut bool
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.DebugLevel && e.Message == "connecting direct" && strings.Contains(fmt.Sprint(e.Data["why"]), "no rule matches") {
			direct1 = true
		}
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "direct connect timed out after 0.02 s, as the application's own would have without shunt") {
			timedOut = true
		}
	}
	if !direct1 || !timedOut {
		for _, e := range hook.AllEntries() {
			t.Logf("%v %s %v", e.Level, e.Message, e.Data)
		}
		t.Errorf("logged the direct flow: %v, its timeout: %v", direct1, timedOut)
	}
}

// dialFunc is a tunnel and direct dialer made of one function.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

func (f dialFunc) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	return f(ctx, addr)
}
func (f dialFunc) DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error) {
	return f(ctx, addr)
}
func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, addr)
}

func TestSynTimeout(t *testing.T) {
	for _, tt := range []struct {
		retries, linear int
		want            time.Duration
	}{
		{0, 0, 1 * time.Second},
		{1, 0, 3 * time.Second},
		{2, 0, 7 * time.Second},
		{6, 0, 127 * time.Second},           // Linux's default before 6.5
		{6, 4, 131 * time.Second},           // and since: 1,1,1,1,1,2,4,...,64
		{1, 4, 7 * time.Second},             // 1,1,1,1,1,2
		{7, 0, (127 + 120) * time.Second},   // the RTO stops at 120 s
		{8, 0, (127 + 2*120) * time.Second}, // tcp_model_timeout: linear beyond
		{-1, -1, 1 * time.Second},           // nonsense counts as 0
		{6, 6, (6 + 1 + 126) * time.Second}, // 7 of 1 s, then 2..64
		{5, 0, (1 + 2 + 4 + 8 + 16 + 32) * time.Second},
	} {
		if got := synTimeout(tt.retries, tt.linear); got != tt.want {
			t.Errorf("synTimeout(%d, %d) = %v, want %v", tt.retries, tt.linear, got, tt.want)
		}
	}
}

func TestKernelConnectTimeout(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			v, ok := m[name]
			if !ok {
				return nil, fmt.Errorf("open %s: no such file", name)
			}
			return []byte(v), nil
		}
	}
	for _, tt := range []struct {
		files   map[string]string
		want    time.Duration
		wantWhy string
	}{
		{map[string]string{"tcp_syn_retries": "6\n", "tcp_syn_linear_timeouts": "4\n"}, 131 * time.Second, "net.ipv4.tcp_syn_retries 6, tcp_syn_linear_timeouts 4"},
		{map[string]string{"tcp_syn_retries": "6\n"}, 127 * time.Second, "net.ipv4.tcp_syn_retries 6"},
		{map[string]string{"tcp_syn_retries": "2\n", "tcp_syn_linear_timeouts": "0\n"}, 7 * time.Second, "net.ipv4.tcp_syn_retries 2"},
		{map[string]string{}, 127 * time.Second, "net.ipv4.tcp_syn_retries unreadable, Linux's default 6"},
		{map[string]string{"tcp_syn_retries": "x"}, 127 * time.Second, "net.ipv4.tcp_syn_retries unreadable, Linux's default 6"},
	} {
		got, why := kernelConnectTimeout(files(tt.files))
		if got != tt.want || why != tt.wantWhy {
			t.Errorf("%v: %v (%s), want %v (%s)", tt.files, got, why, tt.want, tt.wantWhy)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Counting a set-up costs no allocation: a flow takes and gives back its
// slots under one mutex, in maps that keep their room.
func TestLimiterAllocationFree(t *testing.T) {
	l := newLimiter(Limits{})
	k := setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.1.0.7:993"), uid: 1000, hasUID: true}
	if n := testing.AllocsPerRun(1000, func() {
		if l.acquire(k) != nil {
			t.Fatal("refused")
		}
		l.release(k)
	}); n != 0 {
		t.Errorf("a set-up's acquire and release allocate %v times", n)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := newLimiter(Limits{})
	k := setupKey{profile: "gw", dst: netip.MustParseAddrPort("10.1.0.7:993")}
	b.ReportAllocs()
	for b.Loop() {
		l.acquire(k)
		l.release(k)
	}
}
