package resolver

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// zone is an in-process DNS server whose answers the test changes.
type zone struct {
	mu   sync.Mutex
	a    map[string][]string
	ttl  uint32
	srv  *dns.Server
	addr string
}

func newZone(t *testing.T) *zone {
	t.Helper()
	z := &zone{a: map[string][]string{}, ttl: 1}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	z.srv = &dns.Server{PacketConn: pc, Handler: z}
	started := make(chan struct{})
	z.srv.NotifyStartedFunc = func() { close(started) }
	go z.srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { z.srv.Shutdown() })
	return z
}

func (z *zone) set(name string, addrs ...string) {
	z.mu.Lock()
	z.a[dns.Fqdn(name)] = addrs
	z.mu.Unlock()
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	z.mu.Lock()
	defer z.mu.Unlock()
	q := req.Question[0]
	addrs, ok := z.a[q.Name]
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	for _, s := range addrs {
		a := netip.MustParseAddr(s)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: z.ttl}
		switch {
		case a.Is4() && q.Qtype == dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case a.Is6() && q.Qtype == dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	w.WriteMsg(m)
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func TestFollowsChangingAnswers(t *testing.T) {
	z := newZone(t)
	z.set("mail.corp.example", "10.1.2.3", "fd00::3")
	changes := make(chan struct{}, 10)
	r, err := New([]string{"mail.corp.example", "nowhere.example"}, Options{
		Servers: []string{z.addr}, Log: quiet(),
		OnChange: func() { changes <- struct{}{} },
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	defer r.Close()
	<-changes
	if got := r.Addrs("mail.corp.example"); len(got) != 2 || got[0] != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("Addrs = %v", got)
	}
	if got := r.Names(netip.MustParseAddr("10.1.2.3")); len(got) != 1 || got[0] != "mail.corp.example" {
		t.Fatalf("Names = %v", got)
	}
	if got := r.Addrs("nowhere.example"); len(got) != 0 {
		t.Fatalf("an unknown name resolved to %v", got)
	}
	// The answer changes; the TTL (floored at MinTTL) brings it in.
	z.set("mail.corp.example", "10.1.2.4")
	select {
	case <-changes:
	case <-time.After(MinTTL + 5*time.Second):
		t.Fatal("the new answer was not picked up after its TTL")
	}
	if got := r.Addrs("mail.corp.example"); len(got) != 1 || got[0] != netip.MustParseAddr("10.1.2.4") {
		t.Fatalf("Addrs after the change = %v", got)
	}
	if got := r.Names(netip.MustParseAddr("10.1.2.3")); len(got) != 0 {
		t.Fatalf("the old address still has names %v", got)
	}
}
