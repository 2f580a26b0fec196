package netstack

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/shunt-dev/shunt/tun"
)

// FuzzUnreachable feeds arbitrary packets, as an application could write
// them to the TUN, to the ICMP error builder: it must never panic, and what
// it answers must be a well-formed ICMP error no larger than RFC 4443 allows.
func FuzzUnreachable(f *testing.F) {
	udp := []byte{0, 53, 0, 53, 0, 8, 0, 0}
	f.Add(ip4Packet("192.0.2.1", "10.1.2.3", 17, udp...))
	f.Add(ip4Packet("192.0.2.1", "10.1.2.3", 1, 8, 0, 0, 0, 0, 1, 0, 1))
	f.Add(ip6Packet("2001:db8::1", "fd00::5", 17, udp...))
	f.Add(ip6Packet("2001:db8::1", "fd00::5", 58, 128, 0, 0, 0, 0, 1, 0, 1))
	f.Add([]byte{0x45, 0, 0})
	f.Add([]byte{0x60})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		reply := unreachable(pkt, make([]byte, icmpv6MaxReply))
		if reply == nil {
			return
		}
		if len(reply) > icmpv6MaxReply {
			t.Fatalf("reply of %d bytes, more than %d", len(reply), icmpv6MaxReply)
		}
		switch header.IPVersion(reply) {
		case header.IPv4Version:
			ip := header.IPv4(reply)
			if !ip.IsValid(len(reply)) || !ip.IsChecksumValid() {
				t.Fatalf("malformed IPv4 reply % x", reply)
			}
			if ip.Protocol() != uint8(header.ICMPv4ProtocolNumber) {
				t.Fatalf("reply carries protocol %d, not ICMP", ip.Protocol())
			}
			if checksum.Checksum(ip.Payload(), 0) != 0xffff {
				t.Fatalf("bad ICMP checksum in % x", reply)
			}
		case header.IPv6Version:
			ip := header.IPv6(reply)
			if !ip.IsValid(len(reply)) || ip.TransportProtocol() != header.ICMPv6ProtocolNumber {
				t.Fatalf("malformed IPv6 reply % x", reply)
			}
		default:
			t.Fatalf("reply of IP version %d", header.IPVersion(reply))
		}
	})
}

// refuseAll refuses every flow.
type refuseAll struct{}

func (refuseAll) HandleTCP(context.Context, netip.AddrPort, netip.AddrPort, string, func() (net.Conn, error)) func() {
	return nil
}

// FuzzInbound writes arbitrary packets into a running stack through the
// in-memory TUN, as a local process (or a hostile one) can: the stack must
// neither panic nor stop. The stack serves UDP and TCP on shunt's DNS
// addresses and has fake addresses, so packets to them take their paths
// (testdata/fuzz/FuzzInbound holds such packets).
func FuzzInbound(f *testing.F) {
	f.Add(ip4Packet("192.0.2.1", "10.1.2.3", 6, make([]byte, 20)...))
	f.Add(ip6Packet("2001:db8::1", "fd00::5", 6, make([]byte, 20)...))
	f.Add(ip4Packet("192.0.2.1", "10.1.2.3", 17, 0, 53, 0, 53, 0, 8, 0, 0))
	f.Add(ip4Packet("192.0.2.1", "169.254.83.53", 17, 0x9c, 0x40, 0, 53, 0, 8, 0, 0))
	f.Add(ip6Packet("2001:db8::1", "fd53:6875:6e74::53", 17, 0x9c, 0x40, 0, 53, 0, 8, 0, 0))
	f.Add([]byte{0x45})
	dev := tun.NewMemory(1500, 8)
	s, err := New(dev, refuseAll{}, Options{MTU: 1500, Hosts: fakeHosts{netip.MustParseAddr("198.18.0.3"): "mail.corp.example"}})
	if err != nil {
		f.Fatal(err)
	}
	for _, addr := range serviceAddrs {
		pc, err := s.ListenUDP(addr)
		if err != nil {
			f.Fatal(err)
		}
		go serveDNS(pc, make(chan net.Addr))
		l, err := s.ListenTCP(addr)
		if err != nil {
			f.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	stop := make(chan struct{})
	go func() { // what the stack answers is not looked at
		for {
			select {
			case <-dev.Outbound():
			case <-stop:
				return
			}
		}
	}()
	f.Cleanup(func() { s.Close(); close(stop) })
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > 1500 {
			pkt = pkt[:1500]
		}
		dev.Inject(pkt) // it copies
		select {
		case err := <-s.Err():
			t.Fatalf("stack failed: %v", err)
		default:
		}
	})
}
