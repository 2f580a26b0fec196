package platform

import (
	"context"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/shunt-dev/shunt/internal/testns"
)

// Once shunt is the system's resolver, its own look-ups must ask the
// resolvers the system had: NewBypass sends every query to them,
// whatever /etc/resolv.conf says, from marked sockets.
func TestBypassAsksTheGivenServers(t *testing.T) {
	// In the machine's namespace, on loopback only: the resolver dials
	// from goroutines of its own, which a test namespace's locked thread
	// would not hold. SO_MARK needs root.
	if os.Geteuid() != 0 {
		testns.Need(t, "root (SO_MARK)")
	}
	{
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var asked atomic.Int32
		srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			asked.Add(1)
			m := new(dns.Msg)
			m.SetReply(r)
			if q := r.Question[0]; q.Name == "via.shunt.test." && q.Qtype == dns.TypeA {
				a, _ := dns.NewRR("via.shunt.test. 60 IN A 10.9.9.9")
				m.Answer = append(m.Answer, a)
			}
			w.WriteMsg(m)
		})}
		go srv.ActivateAndServe()
		defer srv.Shutdown()
		server := netip.MustParseAddrPort(pc.LocalAddr().String())
		b, err := NewBypass(BypassOptions{Mark: DefaultMark, Servers: func() []netip.AddrPort { return []netip.AddrPort{server} }})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		addrs, err := b.Resolver().LookupHost(context.Background(), "via.shunt.test.")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(addrs, "10.9.9.9") || asked.Load() == 0 {
			t.Fatalf("looked up %v with %d queries to %v", addrs, asked.Load(), server)
		}
	}
}
