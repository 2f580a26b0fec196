package netstack

import (
	"encoding/binary"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Only TCP is captured, and UDP reaches only shunt's own services
// (services.go). Anything else sent to a captured destination (UDP, ping,
// other protocols) is answered at once with an ICMP "destination
// unreachable", so applications fail fast instead of waiting for a timeout:
// UDP gets "port unreachable" (a connected UDP socket sees ECONNREFUSED), the
// rest "administratively prohibited".

const (
	icmpv4Unreachable      = 3
	icmpv4CodePort         = 3
	icmpv4CodeProhibited   = 13
	icmpv6Unreachable      = 1
	icmpv6CodeProhibited   = 1
	icmpv6CodePort         = 4
	icmpv4MaxReply         = 576  // RFC 1812 4.3.2.3
	icmpv6MaxReply         = 1280 // RFC 4443 2.4(c)
	icmpHeaderLen          = 8
	ipProtoICMPv4          = 1
	ipProtoUDP             = 17
	ipProtoICMPv6          = 58
	icmpv6FirstInfoType    = 128
	icmpv4EchoRequest      = 8
	icmpv4TimestampRequest = 13
	icmpv4AddrMaskRequest  = 17
	ipv4FragmentOffsetMask = 0x1fff
	ipv4DefaultTTL         = 64
	ipv6DefaultHopLimit    = 64
)

// unreachable builds the ICMP error answering pkt into reply (which must have
// room for icmpv6MaxReply bytes) and returns it, or nil when pkt must not be
// answered: ICMP errors, fragments after the first, multicast and broadcast,
// ICMPv6 messages other than echo (neighbour discovery, MLD).
func unreachable(pkt []byte, reply []byte) []byte {
	switch header.IPVersion(pkt) {
	case header.IPv4Version:
		return unreachable4(pkt, reply)
	case header.IPv6Version:
		return unreachable6(pkt, reply)
	}
	return nil
}

func unreachable4(pkt []byte, reply []byte) []byte {
	ip := header.IPv4(pkt)
	if !ip.IsValid(len(pkt)) {
		return nil
	}
	src, dst := addr4(ip.SourceAddressSlice()), addr4(ip.DestinationAddressSlice())
	if !answerable(src, dst) || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return nil
	}
	if binary.BigEndian.Uint16(pkt[6:8])&ipv4FragmentOffsetMask != 0 {
		return nil
	}
	code := byte(icmpv4CodeProhibited)
	switch ip.Protocol() {
	case ipProtoUDP:
		code = icmpv4CodePort
	case ipProtoICMPv4:
		payload := ip.Payload()
		if len(payload) < 1 {
			return nil
		}
		switch payload[0] {
		case icmpv4EchoRequest, icmpv4TimestampRequest, icmpv4AddrMaskRequest:
		default:
			return nil // never answer an error, or a reply
		}
	}
	quote := pkt
	if max := icmpv4MaxReply - header.IPv4MinimumSize - icmpHeaderLen; len(quote) > max {
		quote = quote[:max]
	}
	total := header.IPv4MinimumSize + icmpHeaderLen + len(quote)
	reply = reply[:total]
	out := header.IPv4(reply)
	out.Encode(&header.IPv4Fields{
		TotalLength: uint16(total),
		TTL:         ipv4DefaultTTL,
		Protocol:    ipProtoICMPv4,
		SrcAddr:     ip.DestinationAddress(),
		DstAddr:     ip.SourceAddress(),
	})
	out.SetChecksum(^out.CalculateChecksum())
	icmp := reply[header.IPv4MinimumSize:]
	clear(icmp[:icmpHeaderLen])
	icmp[0], icmp[1] = icmpv4Unreachable, code
	copy(icmp[icmpHeaderLen:], quote)
	binary.BigEndian.PutUint16(icmp[2:4], ^checksum.Checksum(icmp, 0))
	return reply
}

func unreachable6(pkt []byte, reply []byte) []byte {
	ip := header.IPv6(pkt)
	if !ip.IsValid(len(pkt)) {
		return nil
	}
	src, dst := addr16(ip.SourceAddressSlice()), addr16(ip.DestinationAddressSlice())
	if !answerable(src, dst) {
		return nil
	}
	code := byte(icmpv6CodeProhibited)
	switch ip.NextHeader() {
	case ipProtoUDP:
		code = icmpv6CodePort
	case ipProtoICMPv6:
		payload := ip.Payload()
		// Answer only echo requests: errors must never be answered, and
		// the other informational types are neighbour discovery and MLD,
		// which the kernel sends on any link it brings up.
		if len(payload) < 1 || payload[0] != byte(header.ICMPv6EchoRequest) {
			return nil
		}
	}
	quote := pkt
	if max := icmpv6MaxReply - header.IPv6MinimumSize - icmpHeaderLen; len(quote) > max {
		quote = quote[:max]
	}
	plen := icmpHeaderLen + len(quote)
	reply = reply[:header.IPv6MinimumSize+plen]
	out := header.IPv6(reply)
	out.Encode(&header.IPv6Fields{
		PayloadLength:     uint16(plen),
		TransportProtocol: ipProtoICMPv6,
		HopLimit:          ipv6DefaultHopLimit,
		SrcAddr:           ip.DestinationAddress(),
		DstAddr:           ip.SourceAddress(),
	})
	icmp := reply[header.IPv6MinimumSize:]
	clear(icmp[:icmpHeaderLen])
	icmp[0], icmp[1] = icmpv6Unreachable, code
	copy(icmp[icmpHeaderLen:], quote)
	icmpv6 := header.ICMPv6(icmp)
	icmpv6.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{
		Header: icmpv6,
		Src:    ip.DestinationAddress(),
		Dst:    ip.SourceAddress(),
	}))
	return reply
}

// answerable reports whether a packet from src to dst may get an ICMP error:
// never to or from an unspecified or multicast address.
func answerable(src, dst netip.Addr) bool {
	return !src.IsUnspecified() && !src.IsMulticast() && !dst.IsUnspecified() && !dst.IsMulticast()
}

func addr4(b []byte) netip.Addr  { return netip.AddrFrom4([4]byte(b)) }
func addr16(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b)) }
