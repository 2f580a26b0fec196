package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

var networks = []string{"udp", "tcp"}

func TestFakeAnswers(t *testing.T) {
	up := newZone(t)
	ts := start(t, Options{Policy: corp, Upstreams: []netip.AddrPort{up.addr}})
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			a := ts.ask(t, network, "mail.corp.example.", mdns.TypeA, 0)
			aaaa := ts.ask(t, network, "mail.corp.example.", mdns.TypeAAAA, 0)
			for _, m := range []*mdns.Msg{a, aaaa} {
				if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 1 || !m.Authoritative {
					t.Fatalf("want one authoritative record:\n%v", m)
				}
				if ttl := m.Answer[0].Header().Ttl; ttl != uint32(DefaultTTL/time.Second) {
					t.Errorf("TTL %d, want %v", ttl, DefaultTTL)
				}
			}
			a4, a6 := addrs(a)[0], addrs(aaaa)[0]
			if !fake4.Contains(a4) || !fake6.Contains(a6) {
				t.Fatalf("A %v, AAAA %v: not from %v and %v", a4, a6, fake4, fake6)
			}
			// Case and the final dot do not matter; the name keeps its
			// addresses.
			for _, n := range []string{"MAIL.Corp.EXAMPLE.", "mail.CORP.example."} {
				if got := addrs(ts.ask(t, network, n, mdns.TypeA, 0)); !slices.Equal(got, []netip.Addr{a4}) {
					t.Errorf("%s: %v, want %v", n, got, a4)
				}
			}
			if got := ts.ask(t, network, "MAIL.Corp.EXAMPLE.", mdns.TypeA, 0).Answer[0].Header().Name; got != "MAIL.Corp.EXAMPLE." {
				t.Errorf("answer's owner %q, want the name as asked", got)
			}
			for _, a := range []netip.Addr{a4, a6} {
				if got := ts.Fake("Mail.Corp.Example."); !slices.Contains(got, a) {
					t.Errorf("Fake = %v, want it to hold %v", got, a)
				}
				if name, fake := ts.Host(a); name != "mail.corp.example" || !fake {
					t.Errorf("Host(%v) = %q, %v", a, name, fake)
				}
				if got := ts.Names(a); !slices.Equal(got, []string{"mail.corp.example"}) {
					t.Errorf("Names(%v) = %v", a, got)
				}
				rev, _ := mdns.ReverseAddr(a.String())
				m := ts.ask(t, network, strings.ToUpper(rev), mdns.TypePTR, 0)
				if len(m.Answer) != 1 || m.Answer[0].(*mdns.PTR).Ptr != "mail.corp.example." {
					t.Errorf("PTR %s:\n%v", rev, m)
				}
			}
			// Names below a domain, and other names of the policy.
			for _, n := range []string{"corp.example.", "a.b.corp.example.", "git.other.example."} {
				if got := addrs(ts.ask(t, network, n, mdns.TypeA, 0)); len(got) != 1 || !fake4.Contains(got[0]) {
					t.Errorf("%s: %v, want a fake address", n, got)
				}
			}
			// Every other type: NODATA with an SOA, never forwarded.
			for _, qt := range []uint16{mdns.TypeMX, mdns.TypeTXT, mdns.TypeHTTPS, mdns.TypeSVCB, mdns.TypeCNAME, mdns.TypeSRV, mdns.TypeNS, mdns.TypeDS, mdns.TypeCAA} {
				m := ts.ask(t, network, "mail.corp.example.", qt, 1232)
				if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 0 || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != mdns.TypeSOA || m.IsEdns0() == nil {
					t.Errorf("%s: want NODATA with an SOA and an OPT:\n%v", mdns.Type(qt), m)
				}
			}
			// ANY gets both addresses.
			if got := addrs(ts.ask(t, network, "mail.corp.example.", mdns.TypeANY, 0)); !slices.Equal(got, []netip.Addr{a4, a6}) {
				t.Errorf("ANY: %v", got)
			}
			// A fake address without a name does not exist.
			rev, _ := mdns.ReverseAddr("198.19.255.254")
			if m := ts.ask(t, network, rev, mdns.TypePTR, 0); m.Rcode != mdns.RcodeNameError {
				t.Errorf("PTR of an unused fake address: %v", mdns.RcodeToString[m.Rcode])
			}
		})
	}
	if q := up.queries(); len(q) != 0 {
		t.Errorf("the upstream was asked %v", q)
	}
	if st := ts.Stats(); st.Fake == 0 || st.Forwarded != 0 || st.Names != 4 {
		t.Errorf("stats %+v", st)
	}
}

// A family without a range gets NODATA.
func TestFakeOneFamily(t *testing.T) {
	for _, r := range []netip.Prefix{fake4, fake6} {
		ts := start(t, Options{Policy: corp, FakeRanges: []netip.Prefix{r}})
		a := ts.ask(t, "udp", "mail.corp.example.", mdns.TypeA, 0)
		aaaa := ts.ask(t, "udp", "mail.corp.example.", mdns.TypeAAAA, 0)
		has, lacks := a, aaaa
		if r.Addr().Is6() {
			has, lacks = aaaa, a
		}
		if got := addrs(has); len(got) != 1 || !r.Contains(got[0]) {
			t.Errorf("range %v: %v", r, has)
		}
		if lacks.Rcode != mdns.RcodeSuccess || len(lacks.Answer) != 0 {
			t.Errorf("range %v: want NODATA for the other family:\n%v", r, lacks)
		}
	}
}

func TestForward(t *testing.T) {
	up := newZone(t,
		"known.example. 300 IN A 192.0.2.7",
		"known.example. 300 IN AAAA 2001:db8::7",
		"known.example. 300 IN MX 10 mx.known.example.",
		"www.example. 60 IN CNAME web.example.",
		"web.example. 60 IN CNAME real.example.",
		"real.example. 60 IN A 192.0.2.8",
	)
	up.setFail("broken.example", mdns.RcodeServerFailure)
	ts := start(t, Options{Policy: corp, Upstreams: []netip.AddrPort{up.addr}})
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			before := len(up.queries())
			if got := addrs(ts.ask(t, network, "known.example.", mdns.TypeA, 0)); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.7")}) {
				t.Errorf("A: %v", got)
			}
			if got := addrs(ts.ask(t, network, "Known.Example.", mdns.TypeAAAA, 0)); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("2001:db8::7")}) {
				t.Errorf("AAAA: %v", got)
			}
			if m := ts.ask(t, network, "known.example.", mdns.TypeMX, 0); len(m.Answer) != 1 {
				t.Errorf("MX: %v", m)
			}
			m := ts.ask(t, network, "nowhere.example.", mdns.TypeA, 0)
			if m.Rcode != mdns.RcodeNameError {
				t.Errorf("unknown name: %s, want NXDOMAIN", mdns.RcodeToString[m.Rcode])
			}
			m = ts.ask(t, network, "www.example.", mdns.TypeA, 0)
			if len(m.Answer) != 3 || !slices.Equal(addrs(m), []netip.Addr{netip.MustParseAddr("192.0.2.8")}) {
				t.Errorf("CNAME chain:\n%v", m)
			}
			if m := ts.ask(t, network, "broken.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeServerFailure {
				t.Errorf("SERVFAIL of the upstream: %s", mdns.RcodeToString[m.Rcode])
			}
			// A client that asked over TCP is asked over TCP; one over
			// UDP over UDP (no answer here is truncated).
			for _, q := range up.queries()[before:] {
				if q.net != network {
					t.Errorf("asked %v over %s, want %s", q.name, q.net, network)
				}
			}
		})
	}
	if st := ts.Stats(); st.Forwarded != 10 || st.NXDomain != 2 || st.Failed != 2 {
		t.Errorf("stats %+v", st)
	}
}

// A forwarded answer whose CNAME chain leads to a name under the fake
// policy ends there, with the fake addresses, whatever the upstream made
// of that name.
func TestForwardCNAMEToFake(t *testing.T) {
	up := newZone(t,
		"portal.example. 60 IN CNAME login.example.",
		"login.example. 60 IN CNAME MAIL.corp.example.",
	)
	ts := start(t, Options{Policy: corp, Upstreams: []netip.AddrPort{up.addr}})
	fa := ts.Fake("mail.corp.example")
	for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
		m := ts.ask(t, "udp", "portal.example.", qt, 0)
		if m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 3 {
			t.Fatalf("%s:\n%v", mdns.Type(qt), m)
		}
		got := addrs(m)
		if len(got) != 1 || !slices.Contains(fa, got[0]) || m.Answer[2].Header().Name != "MAIL.corp.example." {
			t.Errorf("%s: %v, want the fake address of mail.corp.example %v:\n%v", mdns.Type(qt), got, fa, m)
		}
	}
	if m := ts.ask(t, "udp", "portal.example.", mdns.TypeTXT, 0); m.Rcode != mdns.RcodeSuccess || len(m.Answer) != 2 {
		t.Errorf("TXT: want the chain and no data:\n%v", m)
	}
	if got := up.asked("corp.example"); len(got) != 0 {
		t.Errorf("upstream was asked %v", got)
	}
}

func TestTruncation(t *testing.T) {
	var records []string
	for i := range 60 {
		records = append(records, fmt.Sprintf("big.example. 60 IN A 192.0.2.%d", i+1))
	}
	up := newZone(t, records...)
	ts := start(t, Options{Upstreams: []netip.AddrPort{up.addr}})

	m := ts.ask(t, "udp", "big.example.", mdns.TypeA, 0)
	if !m.Truncated || len(m.Answer) >= 60 {
		t.Errorf("over UDP without EDNS0: want a truncated answer, got TC=%v and %d records", m.Truncated, len(m.Answer))
	}
	// The upstream truncated too, so the server asked it again over TCP.
	if q := up.queries(); len(q) != 2 || q[0].net != "udp" || q[1].net != "tcp" {
		t.Errorf("upstream saw %v, want UDP then TCP", q)
	}
	m = ts.ask(t, "tcp", "big.example.", mdns.TypeA, 0)
	if m.Truncated || len(m.Answer) != 60 {
		t.Errorf("over TCP: TC=%v, %d records, want all 60", m.Truncated, len(m.Answer))
	}
	m = ts.ask(t, "udp", "big.example.", mdns.TypeA, 4096)
	if m.Truncated || len(m.Answer) != 60 {
		t.Errorf("over UDP with EDNS0 4096: TC=%v, %d records, want all 60", m.Truncated, len(m.Answer))
	}
	// A client's EDNS0 size smaller than the answer.
	m = ts.ask(t, "udp", "big.example.", mdns.TypeA, 600)
	m.Compress = true
	if b, _ := m.Pack(); !m.Truncated || len(b) > 600 {
		t.Errorf("over UDP with EDNS0 600: TC=%v, %d bytes", m.Truncated, len(b))
	}
}

func TestFailover(t *testing.T) {
	good := newZone(t, "known.example. 60 IN A 192.0.2.7")
	failing := newZone(t)
	failing.setFail("known.example", mdns.RcodeRefused)
	// A port nothing listens on: UDP gets "connection refused", TCP a reset.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()

	ts := start(t, Options{Upstreams: []netip.AddrPort{dead, failing.addr, good.addr}})
	for _, network := range networks {
		if got := addrs(ts.ask(t, network, "known.example.", mdns.TypeA, 0)); len(got) != 1 {
			t.Errorf("%s: %v", network, got)
		}
	}

	bad := start(t, Options{Upstreams: []netip.AddrPort{dead}, Timeout: time.Second})
	for _, network := range networks {
		if m := bad.ask(t, network, "known.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeServerFailure {
			t.Errorf("%s, all upstreams dead: %s, want SERVFAIL", network, mdns.RcodeToString[m.Rcode])
		}
	}
	// Only REFUSED answers: the last is relayed.
	ref := start(t, Options{Upstreams: []netip.AddrPort{dead, failing.addr}})
	if m := ref.ask(t, "udp", "known.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeRefused {
		t.Errorf("only REFUSED: %s", mdns.RcodeToString[m.Rcode])
	}
	none := start(t, Options{})
	if m := none.ask(t, "udp", "known.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeRefused {
		t.Errorf("no upstream: %s, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
}

// No query for a name under the fake policy or resolve_through reaches an
// upstream, for any type, over UDP or TCP, whether the far side answers
// or not.
func TestNoLeak(t *testing.T) {
	up := newZone(t, "known.example. 60 IN A 192.0.2.7")
	far := newZone(t, "wiki.int.example. 60 IN A 10.1.2.3")
	tu := newTunnels(t)
	tu.far[office.String()] = far
	pol := corp
	pol.Through = []Through{{Domains: []string{"int.example", "corp.example"}, Profile: "office", Server: office}}
	ts := start(t, Options{Policy: pol, Upstreams: []netip.AddrPort{up.addr}, Tunnels: tu, Timeout: time.Second})
	names := []string{"mail.corp.example.", "MAIL.CORP.EXAMPLE", "x.y.corp.example.", "corp.example.", "git.other.example.", "wiki.int.example.", "nowhere.int.example.", "int.example."}
	types := []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeANY, mdns.TypeMX, mdns.TypeTXT, mdns.TypeHTTPS, mdns.TypeSVCB, mdns.TypeCNAME, mdns.TypeSRV, mdns.TypePTR, mdns.TypeSOA, mdns.TypeNS, mdns.TypeDS, mdns.TypeAXFR, 4242}
	for _, mode := range []string{"", "refuse"} {
		tu.setMode(mode)
		for _, network := range networks {
			for _, n := range names {
				for _, qt := range types {
					for _, class := range []uint16{mdns.ClassINET, mdns.ClassCHAOS} {
						m := new(mdns.Msg)
						m.SetQuestion(mdns.Fqdn(n), qt)
						m.Question[0].Qclass = class
						ts.exchange(t, network, m)
					}
				}
			}
		}
	}
	for _, d := range []string{"corp.example", "int.example", "git.other.example"} {
		if got := up.asked(d); len(got) != 0 {
			t.Errorf("the upstream was asked %v", got)
		}
	}
	// The upstream's log works.
	ts.ask(t, "udp", "known.example.", mdns.TypeA, 0)
	if got := up.asked("known.example"); len(got) != 1 {
		t.Errorf("upstream saw %v for known.example", got)
	}
}

func TestThrough(t *testing.T) {
	far := newZone(t,
		"wiki.corp.example. 60 IN A 10.1.2.3",
		"wiki.corp.example. 60 IN AAAA fd00:1::3",
		"docs.corp.example. 30 IN CNAME wiki.corp.example.",
		"webmail.corp.example. 30 IN CNAME mail.corp.example.",
		"mail.corp.example. 30 IN A 10.1.2.9",
	)
	up := newZone(t)
	tu := newTunnels(t)
	tu.far[office.String()] = far
	clk := newClock()
	ts := start(t, Options{
		Policy:    Policy{Hosts: []string{"mail.corp.example"}, Through: []Through{{Domains: []string{"corp.example"}, Profile: "office", Server: office}}},
		Upstreams: []netip.AddrPort{up.addr},
		Tunnels:   tu,
	}, func(s *Server) { s.now = clk.now })
	real4, real6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("fd00:1::3")
	for _, network := range networks {
		m := ts.ask(t, network, "Docs.Corp.Example.", mdns.TypeA, 0)
		if got := addrs(m); !slices.Equal(got, []netip.Addr{real4}) || len(m.Answer) != 2 {
			t.Errorf("%s: %v:\n%v", network, got, m)
		}
		if got := addrs(ts.ask(t, network, "wiki.corp.example.", mdns.TypeAAAA, 0)); !slices.Equal(got, []netip.Addr{real6}) {
			t.Errorf("%s AAAA: %v", network, got)
		}
		if m := ts.ask(t, network, "nowhere.corp.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN from the far side", network, mdns.RcodeToString[m.Rcode])
		}
	}
	for _, d := range tu.dialed() {
		if d != "office 10.1.0.53:53" {
			t.Errorf("dialled %q", d)
		}
	}
	for _, q := range far.queries() {
		if q.net != "tcp" {
			t.Errorf("far side asked over %s", q.net)
		}
	}
	if got := ts.Names(real4); !slices.Equal(got, []string{"docs.corp.example", "wiki.corp.example"}) {
		t.Errorf("Names(%v) = %v", real4, got)
	}
	if got := ts.Names(real6); !slices.Equal(got, []string{"wiki.corp.example"}) {
		t.Errorf("Names(%v) = %v", real6, got)
	}
	if name, fake := ts.Host(real4); name != "" || fake {
		t.Errorf("Host(%v) = %q, %v: a real address is not fake", real4, name, fake)
	}
	// The chain's TTL (30 s) runs out before the record's (60 s).
	clk.advance(31 * time.Second)
	if got := ts.Names(real4); !slices.Equal(got, []string{"wiki.corp.example"}) {
		t.Errorf("after 31s, Names(%v) = %v", real4, got)
	}
	clk.advance(30 * time.Second)
	if got := ts.Names(real4); len(got) != 0 {
		t.Errorf("after 61s, Names(%v) = %v", real4, got)
	}
	// A far-side CNAME to a name the fake policy names: the fake address.
	m := ts.ask(t, "udp", "webmail.corp.example.", mdns.TypeA, 0)
	if got := addrs(m); len(got) != 1 || !fake4.Contains(got[0]) {
		t.Errorf("CNAME to a fake name: %v", m)
	}
	if st := ts.Stats(); st.Through != 6 || st.NXDomain != 2 {
		t.Errorf("stats %+v", st)
	}
	if q := up.queries(); len(q) != 0 {
		t.Errorf("upstream was asked %v", q)
	}
}

// A far side that does not answer, a channel that does not open, a Dial
// that does not return: SERVFAIL within the timeout, and a warning naming
// the profile and the server, once for a flood.
func TestThroughDead(t *testing.T) {
	for _, mode := range []string{"refuse", "silent", "stuck"} {
		t.Run(mode, func(t *testing.T) {
			up := newZone(t)
			tu := newTunnels(t)
			tu.setMode(mode)
			clk := newClock()
			ts := start(t, Options{
				Policy:    Policy{Through: []Through{{Domains: []string{"corp.example"}, Profile: "office", Server: office}}},
				Upstreams: []netip.AddrPort{up.addr},
				Tunnels:   tu,
				Timeout:   100 * time.Millisecond,
			}, func(s *Server) { s.now = clk.now })
			for i := range 5 {
				network := networks[i%2]
				if m := ts.ask(t, network, "wiki.corp.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeServerFailure {
					t.Fatalf("%s: %s, want SERVFAIL", network, mdns.RcodeToString[m.Rcode])
				}
			}
			warns := func() (n int, last map[string]any) {
				for _, e := range ts.hook.AllEntries() {
					if e.Level == 3 && strings.Contains(e.Message, "far-side") {
						n++
						last = e.Data
					}
				}
				return n, last
			}
			n, data := warns()
			if n != 1 || data["profile"] != "office" || data["server"] != "10.1.0.53:53" {
				t.Fatalf("%d warnings, last %v; want one naming the profile and the server", n, data)
			}
			clk.advance(warnEvery)
			ts.ask(t, "udp", "wiki.corp.example.", mdns.TypeA, 0)
			if n, data = warns(); n != 2 || data["failures_not_logged"] != 4 {
				t.Errorf("after %v: %d warnings, last %v", warnEvery, n, data)
			}
			if q := up.queries(); len(q) != 0 {
				t.Errorf("upstream was asked %v", q)
			}
			if st := ts.Stats(); st.Failed != 6 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// The pool is recycled least recently used, and never hands out a range's
// network or broadcast address.
func TestLRU(t *testing.T) {
	r := netip.MustParsePrefix("192.0.2.8/29") // .9 to .14 usable
	ts := start(t, Options{Policy: Policy{Domains: []string{"corp.example"}}, FakeRanges: []netip.Prefix{r}})
	addrOf := func(n string) netip.Addr {
		t.Helper()
		got := addrs(ts.ask(t, "udp", n+".", mdns.TypeA, 0))
		if len(got) != 1 {
			t.Fatalf("%s: %v", n, got)
		}
		a := got[0]
		if !r.Contains(a) || a == r.Addr() || a == netip.MustParseAddr("192.0.2.15") {
			t.Fatalf("%s got %v, not a usable address of %v", n, a, r)
		}
		return a
	}
	name := func(i int) string { return fmt.Sprintf("n%d.corp.example", i) }
	seen := map[netip.Addr]string{}
	held := []netip.Addr{{}}
	for i := 1; i <= 6; i++ {
		a := addrOf(name(i))
		if o, ok := seen[a]; ok {
			t.Fatalf("%s and %s share %v", o, name(i), a)
		}
		seen[a] = name(i)
		held = append(held, a)
	}
	a1, a2, a3 := held[1], held[2], held[3]
	// Used in the order n1, n2, n3, n4, n5, n6; now n1 and n2 are used
	// again: a flow to n1 (Host), a DNS answer for n2. n3 is the least
	// recently used.
	ts.Host(a1)
	ts.ask(t, "udp", name(2)+".", mdns.TypeA, 0)
	if a := addrOf(name(7)); a != a3 {
		t.Errorf("n7 got %v, want n3's %v", a, a3)
	}
	if name, _ := ts.Host(a3); name != "n7.corp.example" {
		t.Errorf("Host(%v) = %q", a3, name)
	}
	if got := ts.Names(a3); !slices.Equal(got, []string{"n7.corp.example"}) {
		t.Errorf("Names(%v) = %v", a3, got)
	}
	// n4 is next, then n5: the PTR answer for n4 is a use.
	rev, _ := mdns.ReverseAddr(held[4].String())
	ts.ask(t, "udp", rev, mdns.TypePTR, 0)
	a5 := held[5]
	ts.ask(t, "udp", name(6)+".", mdns.TypeMX, 0) // NODATA is an answer too
	if a := addrOf(name(8)); a != a5 {
		t.Errorf("n8 got %v, want n5's %v", a, a5)
	}
	if a := addrOf(name(1)); a != a1 {
		t.Errorf("n1 lost its address")
	}
	if a := addrOf(name(2)); a != a2 {
		t.Errorf("n2 lost its address")
	}
	// Many more names: every address stays usable and unique.
	for i := 9; i < 40; i++ {
		addrOf(name(i))
	}
	got := map[netip.Addr]bool{}
	for i := 34; i < 40; i++ {
		got[addrOf(name(i))] = true
	}
	if len(got) != 6 || ts.Stats().Names != 6 {
		t.Errorf("the last six names hold %d addresses; table %d", len(got), ts.Stats().Names)
	}
	// n3's reverse name now says nothing of n3.
	if name, fake := ts.Host(netip.MustParseAddr("192.0.2.15")); name != "" || !fake {
		t.Errorf("broadcast address: %q %v", name, fake)
	}
}

func TestTableUnit(t *testing.T) {
	// IPv6: the network address is never handed out, the last one is.
	pools, err := checkRanges([]netip.Prefix{netip.MustParsePrefix("fd00::/126")})
	if err != nil {
		t.Fatal(err)
	}
	tab := newTable(pools, 100)
	var got []netip.Addr
	for i := range 3 {
		e, _ := tab.ensure(fmt.Sprint("n", i), int64(i))
		got = append(got, e.addr[v6])
	}
	want := []netip.Addr{netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::3")}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// The table's own bound recycles too.
	pools, _ = checkRanges([]netip.Prefix{fake4, fake6})
	tab = newTable(pools, 3)
	for i := range 10 {
		tab.ensure(fmt.Sprint("n", i), int64(i))
	}
	if len(tab.byName) != 3 || len(tab.byAddr) != 6 {
		t.Errorf("%d names, %d addresses", len(tab.byName), len(tab.byAddr))
	}
	for _, n := range []string{"n7", "n8", "n9"} {
		if tab.byName[n] == nil {
			t.Errorf("%s was recycled", n)
		}
	}
	// A /30 holds two; a third name takes the least recently used one's
	// address, and the IPv4 and IPv6 pools recycle together.
	pools, _ = checkRanges([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/30"), fake6})
	tab = newTable(pools, 10)
	a, _ := tab.ensure("a", 1)
	b, _ := tab.ensure("b", 2)
	tab.ensure("a", 3)
	if c, _ := tab.ensure("c", 4); c.addr != b.addr || tab.byName["b"] != nil || tab.byName["a"] != a {
		t.Errorf("c got %v; b had %v", c.addr, b.addr)
	}
}

func TestAddAcrossSpans(t *testing.T) {
	if got := add(netip.MustParseAddr("fd00::ffff:ffff:ffff:ffff"), 1); got != netip.MustParseAddr("fd00:0:0:1::") {
		t.Errorf("carry: %v", got)
	}
	pools, err := checkRanges([]netip.Prefix{netip.MustParsePrefix("192.0.2.0/30"), netip.MustParsePrefix("198.51.100.0/30")})
	if err != nil {
		t.Fatal(err)
	}
	tab := newTable(pools, 10)
	var got []string
	for i := range 4 {
		e, _ := tab.ensure(fmt.Sprint("n", i), int64(i))
		got = append(got, e.addr[v4].String())
	}
	if want := "192.0.2.1 192.0.2.2 198.51.100.1 198.51.100.2"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestSetPolicy(t *testing.T) {
	up := newZone(t, "mail.corp.example. 60 IN A 192.0.2.99")
	ts := start(t, Options{Policy: corp, Upstreams: []netip.AddrPort{up.addr}})
	mail := ts.Fake("mail.corp.example")
	wiki := ts.Fake("wiki.corp.example")
	if len(mail) != 2 || len(wiki) != 2 {
		t.Fatalf("Fake: %v %v", mail, wiki)
	}
	// A reload with another policy: the table survives.
	if err := ts.SetPolicy(Policy{Hosts: []string{"wiki.corp.example"}}, []netip.Prefix{fake4, fake6}); err != nil {
		t.Fatal(err)
	}
	if got := addrs(ts.ask(t, "udp", "wiki.corp.example.", mdns.TypeA, 0)); !slices.Equal(got, wiki[:1]) {
		t.Errorf("wiki after reload: %v, want %v", got, wiki[:1])
	}
	if name, _ := ts.Host(mail[0]); name != "mail.corp.example" {
		t.Errorf("mail's fake address forgotten on reload: %q", name)
	}
	// mail is no longer fake: asked of the upstream.
	if got := addrs(ts.ask(t, "udp", "mail.corp.example.", mdns.TypeA, 0)); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("192.0.2.99")}) {
		t.Errorf("mail after reload: %v", got)
	}
	// Bad input changes nothing.
	if err := ts.SetPolicy(Policy{Hosts: []string{"*.corp.example"}}, []netip.Prefix{fake4}); err == nil {
		t.Error("a wildcard host: no error")
	}
	if err := ts.SetPolicy(Policy{}, nil); err == nil {
		t.Error("no ranges: no error")
	}
	if name, _ := ts.Host(wiki[1]); name != "wiki.corp.example" {
		t.Errorf("a failed reload changed the table")
	}
	// New ranges: the addresses outside them are dropped, the name gets
	// new ones.
	other := netip.MustParsePrefix("100.64.0.0/24")
	if err := ts.SetPolicy(Policy{Hosts: []string{"wiki.corp.example"}}, []netip.Prefix{other, fake6}); err != nil {
		t.Fatal(err)
	}
	if name, fake := ts.Host(wiki[0]); name != "" || fake {
		t.Errorf("Host(%v) after the range changed: %q %v", wiki[0], name, fake)
	}
	if name, _ := ts.Host(wiki[1]); name != "wiki.corp.example" {
		t.Errorf("the IPv6 address should survive")
	}
	if got := ts.Fake("wiki.corp.example"); len(got) != 2 || !other.Contains(got[0]) || got[1] != wiki[1] {
		t.Errorf("Fake after the range changed: %v", got)
	}
	if got := ts.Fake("known.example"); got != nil {
		t.Errorf("Fake of a name outside the policy: %v", got)
	}
}

func TestMalformed(t *testing.T) {
	ts := start(t, Options{Policy: corp})
	q := func() *mdns.Msg { m := new(mdns.Msg); m.SetQuestion("mail.corp.example.", mdns.TypeA); return m }
	cases := []struct {
		name  string
		msg   func() *mdns.Msg
		rcode int
	}{
		{"no question", func() *mdns.Msg { m := q(); m.Question = nil; return m }, mdns.RcodeFormatError},
		{"two questions", func() *mdns.Msg { m := q(); m.Question = append(m.Question, m.Question[0]); return m }, mdns.RcodeFormatError},
		{"notify", func() *mdns.Msg { m := q(); m.Opcode = mdns.OpcodeNotify; return m }, mdns.RcodeNotImplemented},
		{"update", func() *mdns.Msg { m := q(); m.Opcode = mdns.OpcodeUpdate; return m }, mdns.RcodeNotImplemented},
		{"EDNS version 1", func() *mdns.Msg { m := q(); m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1); return m }, mdns.RcodeBadVers},
	}
	for _, c := range cases {
		for _, tcp := range []bool{false, true} {
			m := serve(t, ts.Server, c.msg(), tcp)
			if m.Rcode != c.rcode || !m.Response {
				t.Errorf("%s: %s, want %s", c.name, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[c.rcode])
			}
		}
	}
	// An answer is never answered.
	m := q()
	m.Response = true
	w := &recorder{}
	ts.ServeDNS(w, m)
	if len(w.msgs) != 0 {
		t.Errorf("answered a response")
	}
	// On the wire: garbage, a short header, a response, two questions.
	c, err := net.Dial("udp", ts.udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	two := q()
	two.Question = append(two.Question, two.Question[0])
	twoB, _ := two.Pack()
	for _, b := range [][]byte{{1, 2, 3}, make([]byte, 12), {0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff}, twoB} {
		c.Write(b)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	var got mdns.Msg
	if err := got.Unpack(buf[:n]); err != nil || got.Rcode != mdns.RcodeFormatError {
		t.Errorf("two questions on the wire: %v %v", err, got)
	}
	// The server still answers.
	if m := ts.ask(t, "udp", "mail.corp.example.", mdns.TypeA, 0); len(m.Answer) != 1 {
		t.Errorf("after garbage: %v", m)
	}
	if st := ts.Stats(); st.Malformed < 10 {
		t.Errorf("stats %+v", st)
	}
}

func TestOptionErrors(t *testing.T) {
	good := []netip.Prefix{fake4}
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no range", Options{}, "no fake-IP range"},
		{"v4 /31", Options{FakeRanges: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/31")}}, "no usable address"},
		{"v6 /128", Options{FakeRanges: []netip.Prefix{netip.MustParsePrefix("fd00::1/128")}}, "no usable address"},
		{"host bits", Options{FakeRanges: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/15")}}, "did you mean 198.18.0.0/15"},
		{"overlap", Options{FakeRanges: []netip.Prefix{fake4, netip.MustParsePrefix("198.19.0.0/16")}}, "overlap"},
		{"mapped", Options{FakeRanges: []netip.Prefix{netip.MustParsePrefix("::ffff:198.18.0.0/111")}}, "IPv4 form"},
		{"wildcard", Options{FakeRanges: good, Policy: Policy{Domains: []string{"*.corp.example"}}}, `write "corp.example"`},
		{"bad host", Options{FakeRanges: good, Policy: Policy{Hosts: []string{"mail corp"}}}, "not a letter"},
		{"root domain", Options{FakeRanges: good, Policy: Policy{Domains: []string{"."}}}, "not a host name"},
		{"empty label", Options{FakeRanges: good, Policy: Policy{Hosts: []string{"a..b"}}}, "labels"},
		{"no profile", Options{FakeRanges: good, Policy: Policy{Through: []Through{{Domains: []string{"x"}, Server: office}}}}, "no profile"},
		{"no server", Options{FakeRanges: good, Policy: Policy{Through: []Through{{Domains: []string{"x"}, Profile: "p"}}}}, "not an address"},
		{"no tunnels", Options{FakeRanges: good, Policy: Policy{Through: []Through{{Domains: []string{"x"}, Profile: "p", Server: office}}}}, "needs tunnels"},
		{"twice", Options{FakeRanges: good, Tunnels: &tunnels{}, Policy: Policy{Through: []Through{
			{Domains: []string{"x"}, Profile: "p", Server: office}, {Domains: []string{"X."}, Profile: "q", Server: office}}}}, `already sent through profile "p"`},
		{"own upstream", Options{FakeRanges: good, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("169.254.83.53:53")}}, "loop"},
		{"fake upstream", Options{FakeRanges: good, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.5:53")}}, "lies in fake-IP range"},
		{"short TTL", Options{FakeRanges: good, TTL: time.Millisecond}, "less than a second"},
	}
	for _, c := range cases {
		s, err := New(c.opts)
		if err == nil {
			s.Close()
			t.Errorf("%s: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// The root in resolve_through is every name.
	s, err := New(Options{FakeRanges: good, Tunnels: &tunnels{}, Policy: Policy{Through: []Through{{Domains: []string{"."}, Profile: "p", Server: office}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _, tr := s.policy.match("anything.example"); v != through || tr.Profile != "p" {
		t.Errorf("root through: %v", v)
	}
}

func TestMatch(t *testing.T) {
	p, err := compile(Policy{
		Hosts:   []string{"Mail.Corp.Example."},
		Domains: []string{"fake.int.example"},
		Through: []Through{
			{Domains: []string{"int.example"}, Profile: "a", Server: office},
			{Domains: []string{"deep.int.example"}, Profile: "b", Server: office},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		v       verdict
		zone    string
		profile string
	}{
		{"mail.corp.example", fake, "mail.corp.example", ""},
		{"x.mail.corp.example", forwarded, "", ""},
		{"corp.example", forwarded, "", ""},
		{"fake.int.example", fake, "fake.int.example", ""},
		{"a.fake.int.example", fake, "fake.int.example", ""},
		{"a.deep.int.example", through, "", "b"},
		{"fake.deep.int.example", through, "", "b"},
		{"int.example", through, "", "a"},
		{"xint.example", forwarded, "", ""},
		{`a\.fake.int.example`, through, "", "a"}, // one label "a.fake"
		{`fake\.int.example`, forwarded, "", ""},
		{"", forwarded, "", ""},
	}
	for _, c := range cases {
		v, zone, tr := p.match(c.name)
		profile := ""
		if tr != nil {
			profile = tr.Profile
		}
		if v != c.v || zone != c.zone || profile != c.profile {
			t.Errorf("match(%q) = %v %q %q, want %v %q %q", c.name, v, zone, profile, c.v, c.zone, c.profile)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { p.match("a.b.fake.int.example") }); allocs != 0 {
		t.Errorf("match allocates %v times", allocs)
	}
}

func TestReverseAddr(t *testing.T) {
	for _, s := range []string{"198.18.0.1", "0.0.0.0", "255.255.255.255", "fd53:6875:6e74:fa6e::1", "2001:db8:abcd::ff00:42:8329"} {
		a := netip.MustParseAddr(s)
		rev, err := mdns.ReverseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := reverseAddr(canon(rev)); !ok || got != a {
			t.Errorf("reverseAddr(%q) = %v %v, want %v", rev, got, ok, a)
		}
	}
	for _, n := range []string{"1.2.3.in-addr.arpa", "01.2.3.4.in-addr.arpa", "256.2.3.4.in-addr.arpa", "a.2.3.4.in-addr.arpa", "1.2.3.4.5.in-addr.arpa",
		"in-addr.arpa", "1.0.ip6.arpa", strings.Repeat("g.", 32) + "ip6.arpa", strings.Repeat("10.", 16) + "ip6.arpa"} {
		if a, ok := reverseAddr(n); ok {
			t.Errorf("reverseAddr(%q) = %v", n, a)
		}
	}
}

// Host is on the flow path: a map look-up under the read lock.
func TestHostDoesNotAllocate(t *testing.T) {
	ts := start(t, Options{Policy: corp})
	a := ts.Fake("mail.corp.example")[0]
	if allocs := testing.AllocsPerRun(100, func() { ts.Host(a) }); allocs != 0 {
		t.Errorf("Host allocates %v times", allocs)
	}
	miss := netip.MustParseAddr("192.0.2.1")
	if allocs := testing.AllocsPerRun(100, func() { ts.Host(miss) }); allocs != 0 {
		t.Errorf("Host of a miss allocates %v times", allocs)
	}
}

func TestConcurrent(t *testing.T) {
	up := newZone(t, "known.example. 60 IN A 192.0.2.7")
	ts := start(t, Options{Policy: corp, Upstreams: []netip.AddrPort{up.addr}, FakeRanges: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				var m *mdns.Msg
				switch i % 3 {
				case 0:
					r := new(mdns.Msg)
					r.SetQuestion(fmt.Sprintf("n%d.corp.example.", (g*50+i)%40), mdns.TypeA)
					m = serve(t, ts.Server, r, false)
				case 1:
					r := new(mdns.Msg)
					r.SetQuestion("known.example.", mdns.TypeA)
					m = serve(t, ts.Server, r, true)
				default:
					for _, a := range ts.Fake(fmt.Sprintf("n%d.corp.example", i%40)) {
						ts.Host(a)
						ts.Names(a)
					}
					ts.Stats()
					continue
				}
				if m.Rcode != mdns.RcodeSuccess {
					t.Errorf("%v", m)
				}
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			ts.SetPolicy(corp, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")})
		}
	}()
	wg.Wait()
	// Every name holds a distinct address.
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	for a, e := range ts.tab.byAddr {
		if e.addr[family(a)] != a || ts.tab.byName[e.name] != e {
			t.Errorf("table inconsistent at %v", a)
		}
	}
}

func TestServeLifecycle(t *testing.T) {
	l, _ := quiet()
	s, err := New(Options{FakeRanges: []netip.Prefix{fake4}, Policy: corp, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(nil, nil); err == nil {
		t.Error("Serve(nil, nil): no error")
	}
	// A listener that fails ends Serve with its error, and stops the
	// other.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ln.Close()
	if err := s.Serve(pc, ln); err == nil {
		t.Error("Serve with a closed listener: no error")
	}
	// Close ends Serve with nil.
	pc, _ = net.ListenPacket("udp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- s.Serve(pc, nil) }()
	q := new(mdns.Msg)
	q.SetQuestion("mail.corp.example.", mdns.TypeA)
	if _, _, err := (&mdns.Client{Timeout: 20 * time.Second}).Exchange(q, pc.LocalAddr().String()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	pc, _ = net.ListenPacket("udp", "127.0.0.1:0")
	if err := s.Serve(pc, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve on a closed server: %v", err)
	}
	if _, err := pc.WriteTo([]byte{0}, pc.LocalAddr()); err == nil {
		t.Error("Serve did not close the packet conn it was given")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestChain(t *testing.T) {
	m := new(mdns.Msg)
	for _, r := range []string{
		"b.example. 50 IN CNAME C.example.",
		"A.example. 60 IN CNAME b.example.",
		"c.example. 40 IN CNAME a.example.", // a loop back to the start
		"c.example. 30 IN A 192.0.2.1",
	} {
		rr, err := mdns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	names, owners, cnames, hops := chain(m, "a.Example.")
	if !slices.Equal(names, []string{"a.example", "b.example", "c.example"}) || !slices.Equal(owners, []string{"a.Example.", "b.example.", "C.example."}) ||
		len(cnames) != 2 || !slices.Equal(hops, []uint32{0, 60, 50}) {
		t.Errorf("chain: %v %v %v %v", names, owners, cnames, hops)
	}
	// A record outside the chain teaches nothing.
	l, _ := quiet()
	s, err := New(Options{FakeRanges: []netip.Prefix{fake4}, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, _ := mdns.NewRR("elsewhere.example. 60 IN A 192.0.2.2")
	m.Answer = append(m.Answer, other)
	m.Question = []mdns.Question{{Name: "a.example.", Qtype: mdns.TypeA, Qclass: mdns.ClassINET}}
	m.Response = true
	s.learn(m)
	if got := s.Names(netip.MustParseAddr("192.0.2.1")); !slices.Equal(got, []string{"a.example", "b.example", "c.example"}) {
		t.Errorf("Names = %v", got)
	}
	if got := s.Names(netip.MustParseAddr("192.0.2.2")); got != nil {
		t.Errorf("Names of a record outside the chain = %v", got)
	}
}

func BenchmarkHost(b *testing.B) {
	l, _ := quiet()
	s, err := New(Options{FakeRanges: []netip.Prefix{fake4}, Policy: corp, Log: l})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var fakes []netip.Addr
	for i := range 1000 {
		fakes = append(fakes, s.Fake(fmt.Sprintf("n%d.corp.example", i))...)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.Host(fakes[i%len(fakes)])
			i++
		}
	})
}
