package engine_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/engine/enginetest"
	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
)

// askTCP sends one query to shunt's DNS server from the application host,
// over TCP through the TUN.
func askTCP(t *testing.T, w *world, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := w.app.Dial(ctx, netip.AddrPortFrom(netlayout.DNS4, 53))
	if err != nil {
		t.Fatalf("connect to the DNS server: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	dc := &mdns.Conn{Conn: c}
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), qtype)
	if err := dc.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		t.Fatalf("%s %s: %v", mdns.TypeToString[qtype], name, err)
	}
	return r
}

// Split DNS in the engine: the server answers on the TUN side, a name a
// tunnel rule names gets a fake address, the flow to it is tunnelled by
// name (the SSH server is asked for mail.corp.example:25), every other
// name is forwarded to the upstreams the system had, the system's
// resolver is pointed at shunt and put back, and the table is saved.
func TestEngineSplitDNS(t *testing.T) {
	w := newWorld(t)
	// The upstream: an in-process resolver that knows public.example.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []string
	up := &mdns.Server{PacketConn: pc, Handler: mdns.HandlerFunc(func(rw mdns.ResponseWriter, r *mdns.Msg) {
		mu.Lock()
		asked = append(asked, r.Question[0].Name)
		mu.Unlock()
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == mdns.TypeA {
			a, _ := mdns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.80")
			m.Answer = append(m.Answer, a)
		}
		rw.WriteMsg(m)
	})}
	go up.ActivateAndServe()
	t.Cleanup(func() { up.Shutdown() })
	upstream := netip.MustParseAddrPort(pc.LocalAddr().String())
	// And over TCP, on the same port: a query that came over TCP is
	// asked over TCP.
	ln, err := net.Listen("tcp", upstream.String())
	if err != nil {
		t.Fatal(err)
	}
	upTCP := &mdns.Server{Listener: ln, Handler: up.Handler}
	go upTCP.ActivateAndServe()
	t.Cleanup(func() { upTCP.Shutdown() })
	osdns := &enginetest.OSDNS{Up: []netip.AddrPort{upstream}}
	deps := w.deps()
	deps.OSDNS = osdns.Open
	// The upstream is reached through the bypass dialer, for real.
	deps.Dialer = dialerFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == upstream.String() {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		return w.dialer.DialContext(ctx, network, addr)
	})
	cfg := w.config(`rules:
  - name: mail
    destinations: [mail.corp.example]
    action: tunnel
    profile: gw
`)
	e, err := engine.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}

	if o := osdns.Opened(); len(o) != 1 || o[0].Mode != "auto" || o[0].StateDir != cfg.StateDir {
		t.Errorf("OSDNS opened with %+v", o)
	}
	if s := osdns.Sets(); len(s) != 1 || !slices.Equal(s[0].Nameservers, netlayout.DNSAddrs()) ||
		!slices.Equal(s[0].Domains, []string{"mail.corp.example"}) || s[0].Device != w.capture.Device() {
		t.Errorf("the system's resolver was set to %+v", s)
	}
	for _, p := range []string{"198.18.0.0/15", "fd53:6875:6e74:fa6e::/64", "169.254.83.53/32"} {
		if !slices.Contains(w.capture.Routes(), netip.MustParsePrefix(p)) {
			t.Errorf("%s is not routed to the TUN: %v", p, w.capture.Routes())
		}
	}

	r := askTCP(t, w, "MAIL.corp.example", mdns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatalf("A mail.corp.example: %v", r)
	}
	fake := netip.MustParseAddr(r.Answer[0].(*mdns.A).A.String())
	if !netlayout.Fake4.Contains(fake) {
		t.Fatalf("mail.corp.example is %v, not a fake address", fake)
	}
	roundTrip(t, mustDial(t, w, netip.AddrPortFrom(fake, 25).String()), 1000)
	if got := w.forwarded(); !slices.Contains(got, "mail.corp.example:25") {
		t.Errorf("the SSH server was asked for %v, want mail.corp.example:25 (the name, resolved on the far side)", got)
	}
	// A fake address that no name holds is refused.
	refused(t, w, "198.19.255.1:25")

	// Every other name goes to the upstream.
	r = askTCP(t, w, "public.example", mdns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "192.0.2.80" {
		t.Errorf("A public.example: %v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range asked {
		if n == "mail.corp.example." {
			t.Errorf("the upstream was asked for %s", n)
		}
	}

	st := e.Status()
	if d := st.DNS; d == nil || d.Mode != platform.DNSModeFile || d.Names != 1 || d.Queries.Fake != 1 || d.Queries.Forwarded != 1 ||
		!slices.Equal(d.Upstreams, []string{upstream.String()}) || !slices.Equal(d.Servers, []string{"169.254.83.53:53", "[fd53:6875:6e74::53]:53"}) {
		t.Errorf("status of split DNS: %+v", st.DNS)
	}
	if n := testutil.CollectAndCount(e.Metrics(), "shunt_dns_queries_total"); n != 6 {
		t.Errorf("%d series of shunt_dns_queries_total, want one per outcome", n)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if osdns.Closes() != 1 {
		t.Errorf("the system's resolver was restored %d times, want once", osdns.Closes())
	}
	table, err := os.ReadFile(filepath.Join(cfg.StateDir, engine.FakeIPFile))
	if err != nil || !strings.Contains(string(table), "mail.corp.example") {
		t.Errorf("fake-IP table on disk: %s, %v", table, err)
	}
}

type dialerFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

// A host-from-application rule that matches a flow by name logs in to the
// name itself, looked up with the system's resolvers: explain says so.
func TestExplainHostFromApplicationByName(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(`rules:
  - name: hosts
    destinations: ["*.corp.example"]
    action: tunnel
    profile: gw
    host_from_application: true
`)
	plan, err := engine.Convert(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ex := plan.Explain(router.Flow{Host: "db.corp.example", Dst: netip.MustParseAddrPort("198.18.0.9:5432")}, nil)
	if ex.Decision.Rule == nil || !strings.HasPrefix(ex.Server, "alice@db.corp.example port ") ||
		!strings.Contains(ex.Server, "from the resolvers the system had before shunt") || !strings.Contains(ex.Route, "db.corp.example") {
		t.Errorf("server %q, route %q, decision %+v", ex.Server, ex.Route, ex.Decision)
	}
}

// A reload that names a host name starts split DNS, one that changes the
// names sets them on the running server, and one that names none stops
// it: the system's resolver is restored and the DNS routes go.
func TestEngineReloadStartsAndStopsSplitDNS(t *testing.T) {
	w := newWorld(t)
	osdns := &enginetest.OSDNS{}
	deps := w.deps()
	deps.OSDNS = osdns.Open
	e, err := engine.New(w.config(rules), deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	dnsRouted := func() bool { return slices.Contains(w.capture.Routes(), netip.MustParsePrefix("198.18.0.0/15")) }
	if len(osdns.Opened()) != 0 || dnsRouted() || e.Status().DNS != nil {
		t.Fatal("split DNS runs without a rule that names a host")
	}
	byName := func(host string) string {
		return "rules:\n  - destinations: [" + host + "]\n    action: tunnel\n    profile: gw\n"
	}
	if err := e.Reload(w.config(byName("mail.corp.example"))); err != nil {
		t.Fatal(err)
	}
	if len(osdns.Opened()) != 1 || len(osdns.Sets()) != 1 || !dnsRouted() || e.Status().DNS == nil {
		t.Fatalf("after naming a host: opened %d, set %v, routes %v", len(osdns.Opened()), osdns.Sets(), w.capture.Routes())
	}
	r := askTCP(t, w, "mail.corp.example", mdns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatalf("A mail.corp.example: %v", r)
	}
	first := r.Answer[0].(*mdns.A).A.String()
	if err := e.Reload(w.config(byName("wiki.corp.example"))); err != nil {
		t.Fatal(err)
	}
	if s := osdns.Sets(); len(osdns.Opened()) != 1 || len(s) != 2 || !slices.Equal(s[1].Domains, []string{"wiki.corp.example"}) {
		t.Errorf("after new names: opened %d, sets %+v", len(osdns.Opened()), s)
	}
	if r := askTCP(t, w, "wiki.corp.example", mdns.TypeA); len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() == first {
		t.Errorf("A wiki.corp.example: %v (mail had %s)", r, first)
	}
	if err := e.Reload(w.config(rules)); err != nil {
		t.Fatal(err)
	}
	if osdns.Closes() != 1 || dnsRouted() || e.Status().DNS != nil {
		t.Errorf("after naming none: restored %d times, routes %v", osdns.Closes(), w.capture.Routes())
	}
}
