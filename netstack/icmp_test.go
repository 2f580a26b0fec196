package netstack

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func ip4Packet(src, dst string, proto uint8, payload ...byte) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+len(payload))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: proto,
		SrcAddr: tcpip.AddrFromSlice(netip.MustParseAddr(src).AsSlice()),
		DstAddr: tcpip.AddrFromSlice(netip.MustParseAddr(dst).AsSlice()),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(pkt[header.IPv4MinimumSize:], payload)
	return pkt
}

func ip6Packet(src, dst string, next uint8, payload ...byte) []byte {
	pkt := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(pkt).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(payload)), TransportProtocol: tcpip.TransportProtocolNumber(next), HopLimit: 64,
		SrcAddr: tcpip.AddrFromSlice(netip.MustParseAddr(src).AsSlice()),
		DstAddr: tcpip.AddrFromSlice(netip.MustParseAddr(dst).AsSlice()),
	})
	copy(pkt[header.IPv6MinimumSize:], payload)
	return pkt
}

func TestUnreachable(t *testing.T) {
	udp := []byte{0, 53, 0, 53, 0, 8, 0, 0}
	tests := []struct {
		name     string
		pkt      []byte
		wantCode int // -1: no reply
	}{
		{"udp4", ip4Packet("192.0.2.1", "10.1.2.3", 17, udp...), icmpv4CodePort},
		{"ping4", ip4Packet("192.0.2.1", "10.1.2.3", 1, 8, 0, 0, 0, 0, 1, 0, 1), icmpv4CodeProhibited},
		{"sctp4", ip4Packet("192.0.2.1", "10.1.2.3", 132, 1, 2, 3, 4), icmpv4CodeProhibited},
		{"icmp4 error is never answered", ip4Packet("192.0.2.1", "10.1.2.3", 1, 3, 3, 0, 0, 0, 0, 0, 0), -1},
		{"echo reply is never answered", ip4Packet("192.0.2.1", "10.1.2.3", 1, 0, 0, 0, 0, 0, 1, 0, 1), -1},
		{"multicast4", ip4Packet("192.0.2.1", "224.0.0.251", 17, udp...), -1},
		{"broadcast4", ip4Packet("192.0.2.1", "255.255.255.255", 17, udp...), -1},
		{"udp6", ip6Packet("2001:db8::1", "fd00::5", 17, udp...), icmpv6CodePort},
		{"ping6", ip6Packet("2001:db8::1", "fd00::5", 58, 128, 0, 0, 0, 0, 1, 0, 1), icmpv6CodeProhibited},
		{"router solicitation", ip6Packet("fe80::1", "ff02::2", 58, 133, 0, 0, 0, 0, 0, 0, 0), -1},
		{"neighbour solicitation to unicast", ip6Packet("fe80::1", "fe80::2", 58, 135, 0, 0, 0, 0, 0, 0, 0), -1},
		{"icmp6 error", ip6Packet("2001:db8::1", "fd00::5", 58, 1, 4, 0, 0, 0, 0, 0, 0), -1},
		{"multicast6", ip6Packet("2001:db8::1", "ff02::fb", 17, udp...), -1},
		{"truncated", []byte{0x45, 0, 0}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := unreachable(tt.pkt, make([]byte, icmpv6MaxReply))
			if tt.wantCode < 0 {
				if r != nil {
					t.Fatalf("got a reply %x, want none", r)
				}
				return
			}
			if r == nil {
				t.Fatal("no reply")
			}
			switch header.IPVersion(r) {
			case 4:
				ip := header.IPv4(r)
				if !ip.IsValid(len(r)) || !ip.IsChecksumValid() {
					t.Fatal("invalid IPv4 header")
				}
				if ip.SourceAddress() != header.IPv4(tt.pkt).DestinationAddress() {
					t.Errorf("reply from %v, want the captured destination", ip.SourceAddress())
				}
				icmp := ip.Payload()
				if icmp[0] != icmpv4Unreachable || int(icmp[1]) != tt.wantCode {
					t.Errorf("type/code = %d/%d, want %d/%d", icmp[0], icmp[1], icmpv4Unreachable, tt.wantCode)
				}
				if checksum.Checksum(icmp, 0) != 0xffff {
					t.Error("bad ICMP checksum")
				}
			case 6:
				ip := header.IPv6(r)
				icmp := header.ICMPv6(ip.Payload())
				if icmp[0] != icmpv6Unreachable || int(icmp[1]) != tt.wantCode {
					t.Errorf("type/code = %d/%d, want %d/%d", icmp[0], icmp[1], icmpv6Unreachable, tt.wantCode)
				}
				want := header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: ip.SourceAddress(), Dst: ip.DestinationAddress()})
				if icmp.Checksum() != want {
					t.Error("bad ICMPv6 checksum")
				}
			}
		})
	}
}
