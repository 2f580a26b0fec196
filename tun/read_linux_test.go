package tun

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/shunt-dev/shunt/internal/testns"
)

// TestDirectReadGSO talks TCP to the kernel through a real TUN with offloads
// on, playing the far end by hand: it answers the kernel's SYN with an MSS of
// 1000, and then checks that the data the kernel sends arrives as written,
// in whole GSO packets (more than one MSS in a packet) that Read returned
// without splitting them or finishing their checksums.
func TestDirectReadGSO(t *testing.T) {
	testns.Run(t, func() {
		dev, _, err := Open(Options{Name: "shtun0", MTU: 65535})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		if _, ok := dev.(*directReader); !ok {
			t.Fatalf("Open returned %T, want the direct reader (no IFF_VNET_HDR on this TUN?)", dev)
		}
		link, err := netlink.LinkByName("shtun0")
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr("10.77.0.1/24")
		if err := netlink.AddrAdd(link, addr); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}

		const mss = 1000
		want := make([]byte, 48<<10)
		for i := range want {
			want[i] = byte(i * 7)
		}
		got := make(chan []byte, 1)
		stats := make(chan readStats, 1)
		go func() {
			b, st := farEnd(t, dev, mss, len(want))
			stats <- st
			got <- b
		}()

		// Dial here, on the thread in the test's namespace.
		c, err := net.DialTimeout("tcp4", "10.77.0.2:4242", 5*time.Second)
		if err != nil {
			t.Fatalf("dial through the TUN: %v", err)
		}
		defer c.Close()
		if _, err := c.Write(want); err != nil {
			t.Fatal(err)
		}
		st := <-stats
		if b := <-got; !bytes.Equal(b, want) {
			t.Fatalf("far end received %d bytes that differ from the %d written", len(b), len(want))
		}
		if st.largest <= mss {
			t.Errorf("largest segment read was %d bytes, want more than the MSS (%d): GSO packets were split", st.largest, mss)
		}
		if st.gso == 0 {
			t.Errorf("no packet came with a virtio GSO type: offloads are off")
		}
	})
}

type readStats struct {
	largest int // payload bytes of the largest segment read
	gso     int // packets with a GSO type in their virtio-net header
}

// farEnd answers the kernel's SYN on dev, then reads and ACKs data until n
// bytes arrived, and returns them.
func farEnd(t *testing.T, dev Device, mss uint16, n int) ([]byte, readStats) {
	var st readStats
	buf := make([]byte, Headroom+65535)
	bufs, sizes := [][]byte{buf}, []int{0}
	deadline := time.Now().Add(10 * time.Second)
	var recv []byte
	var ours, theirs uint32 = 1000, 0
	var sport uint16
	for len(recv) < n && time.Now().Before(deadline) {
		if _, err := dev.Read(bufs, sizes, Headroom); err != nil {
			t.Errorf("read: %v", err)
			return recv, st
		}
		pkt := buf[Headroom : Headroom+sizes[0]]
		if header.IPVersion(pkt) != 4 || header.IPv4(pkt).Protocol() != uint8(header.TCPProtocolNumber) {
			continue // the kernel's own chatter (IPv6 on the link)
		}
		ip := header.IPv4(pkt)
		if int(ip.TotalLength()) != len(pkt) {
			t.Errorf("IPv4 total length %d, packet %d bytes", ip.TotalLength(), len(pkt))
		}
		tcp := header.TCP(ip.Payload())
		if tcp.DestinationPort() != 4242 {
			continue
		}
		if buf[Headroom-virtioNetHdrLen+1] != unix.VIRTIO_NET_HDR_GSO_NONE {
			st.gso++
		}
		switch {
		case tcp.Flags().Contains(header.TCPFlagSyn):
			sport, theirs = tcp.SourcePort(), tcp.SequenceNumber()+1
			reply(t, dev, sport, ours, theirs, header.TCPFlagSyn|header.TCPFlagAck, mss)
			ours++
		case len(tcp.Payload()) > 0:
			if tcp.SequenceNumber() != theirs {
				continue // a retransmission; the ACK below repeats
			}
			st.largest = max(st.largest, len(tcp.Payload()))
			recv = append(recv, tcp.Payload()...)
			theirs += uint32(len(tcp.Payload()))
			reply(t, dev, sport, ours, theirs, header.TCPFlagAck, 0)
		}
	}
	return recv, st
}

// reply writes a segment from 10.77.0.2:4242 to the kernel's port sport,
// with a window of 1 MiB (scaled) and, on a SYN-ACK, the given MSS.
func reply(t *testing.T, dev Device, sport uint16, seq, ack uint32, flags header.TCPFlags, mss uint16) {
	src := tcpip.AddrFrom4([4]byte{10, 77, 0, 2})
	dst := tcpip.AddrFrom4([4]byte{10, 77, 0, 1})
	var opts []byte
	if mss != 0 {
		opts = []byte{2, 4, 0, 0, 3, 3, 5, 1} // MSS, window scale 5, NOP
		binary.BigEndian.PutUint16(opts[2:], mss)
	}
	tcpLen := header.TCPMinimumSize + len(opts)
	b := make([]byte, Headroom+header.IPv4MinimumSize+tcpLen)
	pkt := b[Headroom:]
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr: src, DstAddr: dst,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(pkt[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{
		SrcPort: 4242, DstPort: sport, SeqNum: seq, AckNum: ack,
		DataOffset: uint8(tcpLen), Flags: flags, WindowSize: 1 << 15,
	})
	copy(tcp[header.TCPMinimumSize:], opts)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	if _, err := dev.Write([][]byte{b}, Headroom); err != nil {
		t.Errorf("write: %v", err)
	}
}
