package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"go.uber.org/goleak"

	"github.com/shunt-dev/shunt/internal/testns"
)

// Every test must stop the goroutines it starts; the tests skipped for
// want of a program are listed at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testns.Report(os.Stderr, false)
		os.Exit(code)
	}))
}

var (
	fake4 = netip.MustParsePrefix("198.18.0.0/15")
	fake6 = netip.MustParsePrefix("fd53:6875:6e74:fa6e::/64")
	corp  = Policy{
		Hosts:   []string{"mail.corp.example", "git.other.example"},
		Domains: []string{"corp.example"},
	}
	office = netip.MustParseAddrPort("10.1.0.53:53")
)

// seen is a query a fake resolver received.
type seen struct {
	name  string // canonical
	qtype uint16
	net   string // "udp" or "tcp"
}

// zone is an in-process resolver, on UDP and TCP of one port of
// 127.0.0.1: it answers from its records, follows CNAMEs within them as a
// recursive resolver would, truncates UDP answers to the client's size,
// and records every query.
type zone struct {
	addr netip.AddrPort
	mu   sync.Mutex
	rrs  map[string][]mdns.RR // canonical name → records
	fail map[string]int       // canonical name → rcode to answer
	log  []seen
	srvs []*mdns.Server
}

func newZone(t testing.TB, records ...string) *zone {
	t.Helper()
	z := &zone{rrs: map[string][]mdns.RR{}, fail: map[string]int{}}
	for _, r := range records {
		z.add(t, r)
	}
	var pc net.PacketConn
	var l net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatalf("no port free for both UDP and TCP: %v", err)
		}
	}
	z.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: z}, {Listener: l, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		z.srvs = append(z.srvs, srv)
	}
	t.Cleanup(z.close)
	return z
}

func (z *zone) close() {
	for _, s := range z.srvs {
		s.Shutdown()
	}
	z.srvs = nil
}

func (z *zone) add(t testing.TB, record string) {
	t.Helper()
	rr, err := mdns.NewRR(record)
	if err != nil {
		t.Fatal(err)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	n := canon(rr.Header().Name)
	z.rrs[n] = append(z.rrs[n], rr)
}

func (z *zone) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	tcp := isTCP(w)
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(4096, false)
	}
	q := r.Question[0]
	z.mu.Lock()
	z.log = append(z.log, seen{canon(q.Name), q.Qtype, map[bool]string{true: "tcp", false: "udp"}[tcp]})
	name := canon(q.Name)
	for hops := 0; hops < 8; hops++ {
		if rc, ok := z.fail[name]; ok {
			m.Rcode = rc
			break
		}
		rrs, ok := z.rrs[name]
		if !ok {
			m.Rcode = mdns.RcodeNameError
			break
		}
		var cname *mdns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype || q.Qtype == mdns.TypeANY {
				m.Answer = append(m.Answer, mdns.Copy(rr))
			} else if c, ok := rr.(*mdns.CNAME); ok {
				cname = c
			}
		}
		if cname == nil || q.Qtype == mdns.TypeCNAME {
			break
		}
		m.Answer = append(m.Answer, mdns.Copy(cname))
		name = canon(cname.Target)
	}
	z.mu.Unlock()
	if !tcp {
		m.Truncate(clientSize(r))
	}
	w.WriteMsg(m)
}

// setFail makes the zone answer rcode for name.
func (z *zone) setFail(name string, rcode int) {
	z.mu.Lock()
	z.fail[name] = rcode
	z.mu.Unlock()
}

// queries returns what the zone was asked.
func (z *zone) queries() []seen {
	z.mu.Lock()
	defer z.mu.Unlock()
	return append([]seen(nil), z.log...)
}

// asked reports whether the zone saw a query for name or a name below it.
func (z *zone) asked(domain string) []seen {
	var out []seen
	for _, q := range z.queries() {
		if q.name == domain || strings.HasSuffix(q.name, "."+domain) {
			out = append(out, q)
		}
	}
	return out
}

// tunnels is a fake Tunnels: Dial connects over TCP to the zone that
// stands for addr, or misbehaves as told.
type tunnels struct {
	mu    sync.Mutex
	far   map[string]*zone // "host:port" on the far side → zone
	dials []string         // "profile addr"
	mode  string           // "", "refuse", "silent" (opens, never answers), "stuck" (Dial ignores ctx)
	stuck chan struct{}    // closed to free stuck Dials
	conns []net.Conn
}

func newTunnels(t testing.TB) *tunnels {
	tu := &tunnels{far: map[string]*zone{}, stuck: make(chan struct{})}
	t.Cleanup(func() {
		close(tu.stuck)
		tu.mu.Lock()
		defer tu.mu.Unlock()
		for _, c := range tu.conns {
			c.Close()
		}
	})
	return tu
}

func (tu *tunnels) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	tu.mu.Lock()
	tu.dials = append(tu.dials, profile+" "+addr)
	mode, z := tu.mode, tu.far[addr]
	tu.mu.Unlock()
	switch mode {
	case "refuse":
		return nil, errors.New("administratively prohibited: open failed")
	case "silent":
		c, far := net.Pipe()
		tu.mu.Lock()
		tu.conns = append(tu.conns, far)
		tu.mu.Unlock()
		return c, nil
	case "stuck":
		<-tu.stuck
		return nil, errors.New("freed")
	}
	if z == nil {
		return nil, errors.New("connect failed: no route")
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", z.addr.String())
}

func (tu *tunnels) setMode(m string) {
	tu.mu.Lock()
	tu.mode = m
	tu.mu.Unlock()
}

func (tu *tunnels) dialed() []string {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	return append([]string(nil), tu.dials...)
}

// testServer is a Server serving on 127.0.0.1, UDP and TCP.
type testServer struct {
	*Server
	udp, tcp string
	hook     *logtest.Hook
	served   chan error
}

func quiet() (*logrus.Logger, *logtest.Hook) {
	l, h := logtest.NewNullLogger()
	l.SetLevel(logrus.DebugLevel)
	return l, h
}

// start makes a server with opts, lets setup change it, and serves.
func start(t testing.TB, opts Options, setup ...func(*Server)) *testServer {
	t.Helper()
	l, hook := quiet()
	if opts.Log == nil {
		opts.Log = l
	}
	if opts.FakeRanges == nil {
		opts.FakeRanges = []netip.Prefix{fake4, fake6}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(s)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, udp: pc.LocalAddr().String(), tcp: ln.Addr().String(), hook: hook, served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(pc, ln) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		// ErrClosed: the test ended before Serve began.
		if err := <-ts.served; err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// ask sends a query to the server over network ("udp" or "tcp").
func (ts *testServer) ask(t testing.TB, network, name string, qtype uint16, edns uint16) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	return ts.exchange(t, network, m)
}

func (ts *testServer) exchange(t testing.TB, network string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	addr := ts.udp
	if network == "tcp" {
		addr = ts.tcp
	}
	c := &mdns.Client{Net: network, Timeout: 20 * time.Second, UDPSize: 65535}
	in, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", m.Question[0].Name, mdns.Type(m.Question[0].Qtype), network, err)
	}
	return in
}

// addrs returns the A and AAAA addresses of an answer.
func addrs(m *mdns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			a, _ := netip.AddrFromSlice(rr.A)
			out = append(out, a.Unmap())
		case *mdns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	return out
}

// recorder is a ResponseWriter that keeps what is written.
type recorder struct {
	tcp  bool
	msgs [][]byte
}

var _ mdns.ResponseWriter = (*recorder)(nil)

func (w *recorder) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(169, 254, 83, 53), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(169, 254, 83, 53), Port: 53}
}

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(169, 254, 83, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(169, 254, 83, 1), Port: 40000}
}

func (w *recorder) WriteMsg(m *mdns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *recorder) Write(b []byte) (int, error) {
	w.msgs = append(w.msgs, append([]byte(nil), b...))
	return len(b), nil
}

func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// serve runs one query through ServeDNS and returns the one answer.
func serve(t testing.TB, s *Server, r *mdns.Msg, tcp bool) *mdns.Msg {
	t.Helper()
	w := &recorder{tcp: tcp}
	s.ServeDNS(w, r)
	if len(w.msgs) != 1 {
		t.Fatalf("%d answers, want 1", len(w.msgs))
	}
	m := new(mdns.Msg)
	if err := m.Unpack(w.msgs[0]); err != nil {
		t.Fatal(err)
	}
	return m
}

// clock is a settable time for learned names and log rate limits.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }
