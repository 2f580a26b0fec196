// Package netstacktest provides the other end of an in-memory TUN for
// tests: an application host, a second gVisor stack standing in for the
// machine's kernel and its applications. Its packets go into a tun.Memory,
// and what the stack under test writes to the device comes back to it, so
// a test dials through shunt's stack as an application would, without
// root. It imports nothing of shunt's but tun.
package netstacktest

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/shunt-dev/shunt/tun"
)

// The application host's addresses: the source of every flow it dials.
var (
	Addr4 = netip.MustParseAddr("192.0.2.1")
	Addr6 = netip.MustParseAddr("2001:db8::1")
)

// NIC is the application host's one network interface, for callers that
// use Stack directly.
const NIC = 1

// AppHost is a gVisor stack on the system side of a tun.Memory.
type AppHost struct {
	s *stack.Stack
}

// NewAppHost starts an application host on dev, whose MTU is mtu. It
// stops when the test ends.
func NewAppHost(t testing.TB, dev *tun.Memory, mtu int) *AppHost {
	t.Helper()
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
	})
	ep := channel.New(1024, uint32(mtu), "")
	if err := s.CreateNIC(NIC, ep); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{Addr4, Addr6} {
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		if err := s.AddProtocolAddress(NIC, pa, stack.AddressProperties{}); err != nil {
			t.Fatal(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: NIC},
		{Destination: header.IPv6EmptySubnet, NIC: NIC},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { // app host → TUN
		defer func() { done <- struct{}{} }()
		for {
			pkt := ep.ReadContext(ctx)
			if pkt == nil {
				return
			}
			b := pkt.ToView().AsSlice()
			dev.Inject(b)
			pkt.DecRef()
		}
	}()
	go func() { // TUN → app host
		defer func() { done <- struct{}{} }()
		for {
			select {
			case b := <-dev.Outbound():
				proto := ipv4.ProtocolNumber
				if header.IPVersion(b) == header.IPv6Version {
					proto = ipv6.ProtocolNumber
				}
				pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
				ep.InjectInbound(proto, pkt)
				pkt.DecRef()
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		s.Close()
		s.Wait()
	})
	return &AppHost{s: s}
}

// Dial connects to dst over TCP, as an application on the machine would:
// through the device, to the stack under test.
func (h *AppHost) Dial(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	proto := ipv4.ProtocolNumber
	if dst.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	return gonet.DialContextTCP(ctx, h.s, tcpip.FullAddress{NIC: NIC, Addr: tcpip.AddrFromSlice(dst.Addr().AsSlice()), Port: dst.Port()}, proto)
}

// Stack is the application host's gVisor stack, for what Dial does not
// offer (UDP, a chosen source port).
func (h *AppHost) Stack() *stack.Stack { return h.s }
