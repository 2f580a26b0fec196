package dns

import (
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary bytes to the handler as the miekg server
// would (what does not unpack is answered FORMERR by miekg itself, and
// responses are dropped by accept), over UDP or TCP. It must not panic,
// and must answer once, with a well-formed message that answers the
// query and, over UDP, fits the client's size. Names go everywhere: the
// fake pool, a far side, and an upstream.
func FuzzServeDNS(f *testing.F) {
	up := newZone(f,
		"known.example. 60 IN A 192.0.2.7",
		"alias.example. 60 IN CNAME mail.corp.example.",
	)
	far := newZone(f,
		"wiki.int.example. 60 IN A 10.1.2.3",
		"docs.int.example. 60 IN CNAME wiki.int.example.",
	)
	tu := newTunnels(f)
	tu.far[office.String()] = far
	pol := corp
	pol.Through = []Through{{Domains: []string{"int.example"}, Profile: "office", Server: office}}
	l, _ := quiet()
	s, err := New(Options{
		Policy:     pol,
		FakeRanges: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("fd53:6875:6e74:fa6e::/120")},
		Upstreams:  []netip.AddrPort{up.addr},
		Tunnels:    tu,
		Timeout:    2 * time.Second,
		Log:        l,
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	s.Fake("mail.corp.example") // 198.18.0.1, for the PTR seed

	f.Fuzz(func(t *testing.T, b []byte, tcp bool) {
		r := new(mdns.Msg)
		if r.Unpack(b) != nil || r.Response {
			return
		}
		w := &recorder{tcp: tcp}
		s.ServeDNS(w, r)
		if len(w.msgs) != 1 {
			t.Fatalf("%d answers, want 1", len(w.msgs))
		}
		raw := w.msgs[0]
		m := new(mdns.Msg)
		if err := m.Unpack(raw); err != nil {
			t.Fatalf("the answer does not unpack: %v", err)
		}
		if !m.Response || m.Id != r.Id {
			t.Fatalf("not an answer to the query: %v", m.MsgHdr)
		}
		if !tcp && len(raw) > clientSize(r) {
			t.Fatalf("%d bytes over UDP to a client that takes %d", len(raw), clientSize(r))
		}
		if r.Opcode == mdns.OpcodeQuery && len(r.Question) == 1 && m.Rcode != mdns.RcodeFormatError && m.Rcode != mdns.RcodeBadVers {
			if len(m.Question) != 1 || m.Question[0] != r.Question[0] {
				t.Fatalf("question %v, asked %v", m.Question, r.Question)
			}
		}
	})
}
