package netstack

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// tcpPacket is an IPv4 TCP segment of size bytes (headers included).
func tcpPacket(size int) []byte {
	pkt := make([]byte, size)
	header.IPv4(pkt).Encode(&header.IPv4Fields{TotalLength: uint16(size), Protocol: uint8(header.TCPProtocolNumber), TTL: 64,
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 1})})
	header.TCP(pkt[header.IPv4MinimumSize:]).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 443, DataOffset: 20, Flags: header.TCPFlagAck})
	return pkt
}

// sinkDispatcher takes the packets the link endpoint delivers, the way the
// stack does (it keeps nothing), and counts them.
type sinkDispatcher struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (d *sinkDispatcher) DeliverNetworkPacket(_ tcpip.NetworkProtocolNumber, _ *stack.PacketBuffer) {
	if d.n.Add(1) == d.want {
		close(d.done)
	}
}
func (*sinkDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// loopDevice hands out the same packet on every read, a batch at a time
// (perRead packets if set, else as many as it is given buffers), and
// discards writes, counting packets.
type loopDevice struct {
	pkt     []byte
	batch   int
	perRead int
	widest  atomic.Int64 // the most buffers a read was given
	written atomic.Int64
	want    int64
	wrote   chan struct{}
	closed  chan struct{}
}

func newLoopDevice(pkt []byte, batch int) *loopDevice {
	return &loopDevice{pkt: pkt, batch: batch, wrote: make(chan struct{}), closed: make(chan struct{})}
}

func (d *loopDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-d.closed:
		return 0, errClosedDevice
	default:
	}
	if int64(len(bufs)) > d.widest.Load() {
		d.widest.Store(int64(len(bufs)))
	}
	n := min(d.batch, len(bufs))
	if d.perRead > 0 {
		n = min(n, d.perRead)
	}
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], d.pkt)
	}
	return n, nil
}

func (d *loopDevice) Write(bufs [][]byte, offset int) (int, error) {
	if d.written.Add(int64(len(bufs))) >= d.want && d.want > 0 {
		select {
		case <-d.wrote:
		default:
			close(d.wrote)
		}
	}
	return len(bufs), nil
}
func (d *loopDevice) BatchSize() int { return d.batch }
func (d *loopDevice) Close() error   { close(d.closed); return nil }

var errClosedDevice = fmt.Errorf("loop device: %w", os.ErrClosed)

var pumpSizes = []int{52, 1500, 16 << 10, maxPacket}

// The inbound pump's batch of 64 KiB views grows only as far as the
// device fills it: a device that reports wireguard's batch of 128 but
// reads one packet at a time, as tun's direct reader does, gets two views
// (not 8 MiB of them); one that fills its batches gets them all.
func TestInboundBatchOnDemand(t *testing.T) {
	for _, tt := range []struct{ perRead, want int }{{1, 2}, {0, 128}} {
		dev := newLoopDevice(tcpPacket(52), 128)
		dev.perRead = tt.perRead
		e := newLinkEndpoint(dev, maxPacket)
		d := &sinkDispatcher{want: 2000, done: make(chan struct{})}
		e.Attach(d)
		e.start(func(error) {})
		<-d.done
		e.close()
		dev.Close()
		e.wg.Wait()
		if got := dev.widest.Load(); got != int64(tt.want) {
			t.Errorf("device reading %d packets a time (0: all): reads got up to %d buffers, want %d", tt.perRead, got, tt.want)
		}
	}
}

// BenchmarkInbound: device → link endpoint → stack, per packet: the
// device read, the payload hand-over (copy or split, see packetPayload)
// and the packet buffer.
func BenchmarkInbound(b *testing.B) {
	for _, size := range pumpSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			dev := newLoopDevice(tcpPacket(size), 16)
			e := newLinkEndpoint(dev, maxPacket)
			d := &sinkDispatcher{want: int64(b.N), done: make(chan struct{})}
			e.Attach(d)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			e.start(func(error) {})
			<-d.done
			b.StopTimer()
			e.close()
			dev.Close()
			e.wg.Wait()
		})
	}
}

// BenchmarkOutbound: stack → link endpoint → device, per packet: the copy
// into a pooled buffer, then the device write at once (small packets, the
// queue empty) or the queue and the batched device write.
func BenchmarkOutbound(b *testing.B) {
	for _, size := range pumpSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			dev := newLoopDevice(nil, 16)
			dev.want = int64(b.N)
			e := newLinkEndpoint(dev, maxPacket)
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(tcpPacket(size))})
			defer pkt.DecRef()
			var list stack.PacketBufferList
			list.PushBack(pkt)
			e.wg.Add(1)
			go e.outbound()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; {
				n, err := e.WritePackets(list)
				if err != nil {
					continue // queue full: the writer catches up
				}
				i += n
			}
			<-dev.wrote
			b.StopTimer()
			e.close()
			e.wg.Wait()
		})
	}
}

// The steady-state packet path allocates nothing: a packet delivered from
// the device (small ones copied, large ones split) and one written to it.
func TestPacketPathAllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items); go test without -race runs this")
	}
	for _, size := range pumpSizes {
		e := newLinkEndpoint(newLoopDevice(nil, 1), maxPacket)
		e.Attach(&sinkDispatcher{done: make(chan struct{})})
		pkt := tcpPacket(size)
		in := func() {
			v := buffer.NewViewSize(headroom + maxPacket)
			copy(v.AsSlice()[headroom:], pkt)
			if !e.deliver(v, size) {
				v.Release()
			}
		}
		if n := testing.AllocsPerRun(200, in); n > 0 {
			t.Errorf("delivering a %d-byte packet: %.1f allocations", size, n)
		}
		out := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		var list stack.PacketBufferList
		list.PushBack(out)
		write := func() {
			e.WritePackets(list)
			select {
			case bp := <-e.out: // queued, not written at once
				e.pending.Add(-1)
				e.putBuf(bp)
			default:
			}
		}
		if n := testing.AllocsPerRun(200, write); n > 0 {
			t.Errorf("writing a %d-byte packet: %.1f allocations", size, n)
		}
		out.DecRef()
	}
	// UDP to a service goes to the stack, UDP elsewhere gets its ICMP
	// answer, TCP is as before: with services, the same.
	e := newLinkEndpoint(newLoopDevice(nil, 1), maxPacket)
	d := &sinkDispatcher{done: make(chan struct{})}
	e.Attach(d)
	e.udp.Store(&udpServices{ports: serviceAddrs})
	dns := []byte{0x9c, 0x40, 0, 53, 0, 20, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	other := append([]byte{0x9c, 0x40, 0x14, 0xe9}, dns[4:]...) // port 5353
	for _, tt := range []struct {
		name    string
		pkt     []byte
		service bool
	}{
		{"udp4 to the service", ip4Packet("192.0.2.1", "169.254.83.53", 17, dns...), true},
		{"udp6 to the service", ip6Packet("2001:db8::1", "fd53:6875:6e74::53", 17, dns...), true},
		{"udp4 to another port", ip4Packet("192.0.2.1", "169.254.83.53", 17, other...), false},
		{"udp6 to another address", ip6Packet("2001:db8::1", "fd00::5", 17, dns...), false},
		{"tcp", tcpPacket(52), true},
	} {
		in := func() {
			v := buffer.NewViewSize(headroom + maxPacket)
			copy(v.AsSlice()[headroom:], tt.pkt)
			if !e.deliver(v, len(tt.pkt)) {
				v.Release()
			}
			select {
			case bp := <-e.out: // an ICMP answer
				e.pending.Add(-1)
				e.putBuf(bp)
			default:
			}
		}
		before := d.n.Load()
		if n := testing.AllocsPerRun(200, in); n > 0 {
			t.Errorf("%s: %.1f allocations", tt.name, n)
		}
		if got := d.n.Load() > before; got != tt.service {
			t.Errorf("%s: delivered to the stack %v, want %v", tt.name, got, tt.service)
		}
	}
}

// A small packet is written at once only when nothing waits to be written,
// so packets keep their order.
func TestWriteNowKeepsOrder(t *testing.T) {
	dev := newLoopDevice(nil, 1)
	e := newLinkEndpoint(dev, maxPacket) // no writer goroutine: queued packets stay queued
	send := func(size int) {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(tcpPacket(size))})
		defer pkt.DecRef()
		var list stack.PacketBufferList
		list.PushBack(pkt)
		if n, err := e.WritePackets(list); n != 1 || err != nil {
			t.Fatalf("WritePackets: %d, %v", n, err)
		}
	}
	send(52)
	if dev.written.Load() != 1 || len(e.out) != 0 {
		t.Fatalf("a small packet on an idle device: %d written, %d queued; want it written at once", dev.written.Load(), len(e.out))
	}
	send(16 << 10)
	send(52)
	if dev.written.Load() != 1 || len(e.out) != 2 {
		t.Fatalf("a small packet behind a queued one: %d written, %d queued; want both queued, in order", dev.written.Load(), len(e.out))
	}
	if first := <-e.out; len(*first) != headroom+16<<10 {
		t.Errorf("first queued packet is %d bytes, want the large one", len(*first)-headroom)
	}
}

// A SYN-ACK is never written on the stack's goroutine (gVisor holds the
// endpoint's lock then, and the application's answer must not find it
// held), and a full queue waits for the writer rather than drop it; other
// packets that find the queue full are dropped, as before.
func TestSYNACKQueuedNeverDropped(t *testing.T) {
	dev := newLoopDevice(nil, 1)
	e := newLinkEndpoint(dev, maxPacket) // no writer goroutine yet
	write := func(pkt []byte) (int, tcpip.Error) {
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		defer pb.DecRef()
		var list stack.PacketBufferList
		list.PushBack(pb)
		return e.WritePackets(list)
	}
	synAck := tcpPacket(52)
	header.TCP(synAck[header.IPv4MinimumSize:]).SetFlags(uint8(header.TCPFlagSyn | header.TCPFlagAck))
	if !isSYN(synAck) || isSYN(tcpPacket(52)) {
		t.Fatal("isSYN does not tell a SYN-ACK from an ACK")
	}
	if n, err := write(synAck); n != 1 || err != nil {
		t.Fatalf("WritePackets(SYN-ACK): %d, %v", n, err)
	}
	if dev.written.Load() != 0 || len(e.out) != 1 {
		t.Fatalf("a SYN-ACK on an idle device: %d written at once, %d queued; want it queued", dev.written.Load(), len(e.out))
	}
	for len(e.out) < outQueueLen {
		write(tcpPacket(1500))
	}
	if n, _ := write(tcpPacket(1500)); n != 0 {
		t.Fatalf("a data packet on a full queue: %d taken, want it dropped", n)
	}
	taken := make(chan int)
	go func() {
		n, _ := write(synAck)
		taken <- n
	}()
	select {
	case n := <-taken:
		t.Fatalf("a SYN-ACK on a full queue returned %d before the writer ran; want it to wait", n)
	case <-time.After(50 * time.Millisecond):
	}
	dev.want = outQueueLen + 1
	e.start(func(error) {})
	defer func() { e.close(); dev.Close(); e.Wait() }()
	if n := <-taken; n != 1 {
		t.Fatalf("the SYN-ACK that waited: %d taken, want 1", n)
	}
	<-dev.wrote
}
