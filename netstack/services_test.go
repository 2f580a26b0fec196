package netstack

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/netstack/netstacktest"
)

// serviceAddrs are where shunt's DNS server answers, on the TUN side.
var serviceAddrs = []netip.AddrPort{
	netip.AddrPortFrom(netlayout.DNS4, 53),
	netip.AddrPortFrom(netlayout.DNS6, 53),
}

// countingHandler counts the flows it sees and refuses them.
type countingHandler struct{ n atomic.Int32 }

func (h *countingHandler) HandleTCP(context.Context, netip.AddrPort, netip.AddrPort, string, func() (net.Conn, error)) func() {
	h.n.Add(1)
	return nil
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// dialUDP is a connected UDP socket of the application host to dst.
func dialUDP(t *testing.T, app *netstacktest.AppHost, dst netip.AddrPort) *gonet.UDPConn {
	t.Helper()
	c, err := gonet.DialUDP(app.Stack(), nil, &tcpip.FullAddress{NIC: netstacktest.NIC, Addr: tcpip.AddrFromSlice(dst.Addr().AsSlice()), Port: dst.Port()}, protoOf(dst.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpRefused sends datagrams to dst until the ICMP "port unreachable"
// comes back as an error (gVisor's UDP endpoint returns a recorded ICMP
// error from the next call, but does not wake a blocked Read with it), and
// returns that error, nil if none came.
func udpRefused(t *testing.T, app *netstacktest.AppHost, dst netip.AddrPort) error {
	t.Helper()
	c := dialUDP(t, app, dst)
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); {
		_, err = c.Write([]byte("query"))
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// serveDNS answers every query on pc with an A record of 192.0.2.53 for
// the name asked, until pc closes; it reports each sender on from.
func serveDNS(pc net.PacketConn, from chan<- net.Addr) {
	buf := make([]byte, 1<<16)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var q dns.Msg
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		r := new(dns.Msg).SetReply(&q)
		r.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   net.IPv4(192, 0, 2, 53),
		}}
		out, err := r.Pack()
		if err != nil {
			continue
		}
		select {
		case from <- addr:
		default:
		}
		pc.WriteTo(out, addr)
	}
}

// A UDP service on an address routed into the TUN gets the application's
// datagrams, with their real source, and its answers go back; UDP to
// another port of that address, or to another address, keeps its ICMP
// "port unreachable"; and no datagram becomes a flow.
func TestUDPService(t *testing.T) {
	h := &countingHandler{}
	s, app := startStack(t, h)
	for _, addr := range serviceAddrs {
		pc, err := s.ListenUDP(addr)
		if err != nil {
			t.Fatal(err)
		}
		from := make(chan net.Addr, 1)
		go serveDNS(pc, from)
		t.Run(addr.String(), func(t *testing.T) {
			c := dialUDP(t, app, addr)
			ask := func(q *dns.Msg) {
				t.Helper()
				wire, err := q.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Write(wire); err != nil {
					t.Fatal(err)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				buf := make([]byte, 1500)
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("no answer from %v to a query of %d bytes: %v", addr, len(wire), err)
				}
				var r dns.Msg
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("answer: %v", err)
				}
				if r.Id != q.Id || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.53" {
					t.Errorf("answer %v, want an A record of 192.0.2.53 for query %d", &r, q.Id)
				}
			}
			ask(new(dns.Msg).SetQuestion("mail.corp.example.", dns.TypeA))
			// Larger than the MTU: it arrives in fragments, which
			// reach the service by their address alone.
			big := new(dns.Msg).SetQuestion("mail.corp.example.", dns.TypeA)
			big.SetEdns0(4096, false)
			opt := big.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, 3000)})
			ask(big)
			sender := (<-from).(*net.UDPAddr)
			want := netstacktest.Addr4
			if addr.Addr().Is6() {
				want = netstacktest.Addr6
			}
			if got, _ := netip.AddrFromSlice(sender.IP); got.Unmap() != want || sender.Port != int(c.LocalAddr().(*net.UDPAddr).Port) {
				t.Errorf("the service saw the query from %v, want %v at the application's port", sender, want)
			}
			for _, other := range []netip.AddrPort{
				netip.AddrPortFrom(addr.Addr(), 5353),
				netip.AddrPortFrom(netip.MustParseAddr(map[bool]string{true: "10.1.2.3", false: "fd00::5"}[addr.Addr().Is4()]), 53),
			} {
				if err := udpRefused(t, app, other); err == nil || !strings.Contains(err.Error(), "refused") {
					t.Errorf("UDP to %v = %v, want connection refused (ICMP port unreachable)", other, err)
				}
			}
		})
	}
	if n := h.n.Load(); n != 0 {
		t.Errorf("the handler saw %d flows", n)
	}
}

// A TCP service is served by its listener: the handler never sees its
// connections. Another port of its address is a captured flow as any.
func TestTCPService(t *testing.T) {
	h := &countingHandler{}
	s, app := startStack(t, h)
	for _, addr := range serviceAddrs {
		l, err := s.ListenTCP(addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
		t.Run(addr.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := app.Dial(ctx, addr)
			if err != nil {
				t.Fatalf("dial %v: %v", addr, err)
			}
			defer c.Close()
			// DNS over TCP: a query with its two-byte length.
			q := new(dns.Msg).SetQuestion("wiki.corp.example.", dns.TypeAAAA)
			wire, _ := q.Pack()
			msg := append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
				t.Fatalf("echo %x, %v; want %x", got, err, msg)
			}
			before := h.n.Load()
			other := netip.AddrPortFrom(addr.Addr(), 80)
			if _, err := app.Dial(ctx, other); err == nil || !strings.Contains(err.Error(), "refused") {
				t.Errorf("dial %v = %v, want the handler's refusal", other, err)
			}
			if h.n.Load() != before+1 {
				t.Errorf("the handler did not see the flow to %v", other)
			}
		})
	}
	if n := h.n.Load(); n != 2 {
		t.Errorf("the handler saw %d flows, want the 2 to port 80", n)
	}
}

// Closing a service gives its address back: UDP to it is unreachable
// again, and a SYN to it a captured flow. The stack's Close closes the
// services still open, and takes no new one.
func TestServiceClose(t *testing.T) {
	h := &countingHandler{}
	s, app := startStack(t, h)
	addr := serviceAddrs[0]
	pc, err := s.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListenUDP(addr); err == nil {
		t.Error("a second UDP service on the same address and port")
	}
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := udpRefused(t, app, addr); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("UDP to a closed service = %v, want connection refused", err)
	}
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := app.Dial(ctx, addr); err == nil || h.n.Load() != 1 {
		t.Errorf("dial a closed TCP service = %v, handler saw %d flows; want the handler's refusal", err, h.n.Load())
	}
	// Both again: the address was given back, and is taken again.
	pc, err = s.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	l, err = s.ListenTCP(serviceAddrs[1])
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, _, err := pc.ReadFrom(make([]byte, 10))
		read <- err
	}()
	accepted := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		accepted <- err
	}()
	s.Close()
	if err := <-read; err == nil {
		t.Error("ReadFrom on a service of a closed stack returned no error")
	}
	if err := <-accepted; err == nil {
		t.Error("Accept on a service of a closed stack returned no error")
	}
	if _, err := s.ListenUDP(addr); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ListenUDP on a closed stack = %v, want net.ErrClosed", err)
	}
}

func TestServiceBadAddress(t *testing.T) {
	s, _ := startStack(t, &countingHandler{})
	for _, a := range []string{"0.0.0.0:53", "[::]:53", "224.0.0.251:5353", "169.254.83.53:0"} {
		if _, err := s.ListenUDP(netip.MustParseAddrPort(a)); err == nil {
			t.Errorf("ListenUDP(%s) succeeded", a)
		}
		if _, err := s.ListenTCP(netip.MustParseAddrPort(a)); err == nil {
			t.Errorf("ListenTCP(%s) succeeded", a)
		}
	}
	if _, err := s.ListenUDP(netip.AddrPort{}); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("ListenUDP(zero) = %v", err)
	}
}
