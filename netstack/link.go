package netstack

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// headroom is the space left in front of every packet handed to the device
// (wireguard-go's virtio-net header needs 10 bytes; 16 keeps alignment).
const headroom = 16

// maxPacket is the largest IP packet the stack takes or sends: inbound
// packets are read straight into gVisor's pooled 64 KiB chunks (headroom
// included), and every outbound buffer holds one, so the device may
// coalesce segments into it (GRO) without reallocating.
const maxPacket = buffer.MaxChunkSize - headroom

// outQueueLen bounds the packets waiting for the device writer. A full queue
// drops, as a NIC would: the stack must never block on the device.
const outQueueLen = 2048

// maxReadFailures is how many device read errors in a row end the pump.
const maxReadFailures = 100

// Device is the packet device the stack runs on; tun.Device fits.
type Device interface {
	Read(bufs [][]byte, sizes []int, offset int) (int, error)
	Write(bufs [][]byte, offset int) (int, error)
	BatchSize() int
	Close() error
}

// linkEndpoint is a gVisor link endpoint on a Device. One goroutine (inbound)
// reads batches from the device and delivers them to the stack; another
// (outbound) writes queued packets to the device in batches. WritePackets
// copies into a pooled buffer and queues, so the stack never waits on a
// large write; a small packet with nothing queued before it is written at
// once (writeNow).
type linkEndpoint struct {
	dev Device
	mtu uint32
	// reject answers packets the stack must not see (everything but TCP
	// and the UDP services) with an ICMP error; nil replies are dropped
	// silently.
	reject func(pkt []byte, reply []byte) []byte
	// udp are the UDP services (services.go), nil while there are none.
	udp atomic.Pointer[udpServices]

	mu         sync.RWMutex
	dispatcher stack.NetworkDispatcher

	out chan *[]byte
	// wmu is held while writing to the device; pending counts packets
	// queued and not yet written. A small packet with nothing pending is
	// written by WritePackets itself (see writeNow).
	wmu       sync.Mutex
	pending   atomic.Int64
	direct    [][]byte  // WritePackets' one-packet batch, under wmu
	pool      sync.Pool // *[]byte of headroom+maxPacket
	small     sync.Pool // *[]byte of headroom+smallPacket
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ stack.LinkEndpoint = (*linkEndpoint)(nil)

func newLinkEndpoint(dev Device, mtu uint32) *linkEndpoint {
	e := &linkEndpoint{
		dev:    dev,
		mtu:    mtu,
		reject: unreachable,
		out:    make(chan *[]byte, outQueueLen),
		done:   make(chan struct{}),
	}
	e.pool.New = func() any {
		b := make([]byte, headroom+maxPacket)
		return &b
	}
	e.small.New = func() any {
		b := make([]byte, headroom+smallPacket)
		return &b
	}
	return e
}

// start runs the pumps. onReadError is called once if the device fails.
func (e *linkEndpoint) start(onReadError func(error)) {
	e.wg.Add(2)
	go e.inbound(onReadError)
	go e.outbound()
}

// inbound moves packets from the device into the stack. The device reads
// straight into gVisor views, which then become the packets' payload: no
// copy between the device and the stack.
//
// The batch of views grows on demand, from one up to the device's
// BatchSize: every view is a 64 KiB chunk that gVisor clears when it hands
// it out, so each one is resident, and a Linux TUN with offloads reports
// wireguard's batch of 128 (8 MiB) where tun's direct reader returns one
// packet per read. The batch doubles when a read fills every buffer it was
// given (a device that reads batches), or fails (wireguard's own reader
// fails a GSO packet it must split into more segments than it has
// buffers); it never shrinks, so the steady state allocates nothing.
func (e *linkEndpoint) inbound(onReadError func(error)) {
	defer e.wg.Done()
	n := e.dev.BatchSize()
	views := make([]*buffer.View, n)
	bufs := make([][]byte, n)
	fill := func(i int) {
		views[i] = buffer.NewViewSize(headroom + maxPacket)
		bufs[i] = views[i].AsSlice()
	}
	batch := 1
	fill(0)
	defer func() {
		for _, v := range views[:batch] {
			v.Release()
		}
	}()
	sizes := make([]int, n)
	failures := 0
	for {
		count, err := e.dev.Read(bufs[:batch], sizes[:batch], headroom)
		for i := range count {
			if e.deliver(views[i], sizes[i]) {
				fill(i) // the stack owns that view now
			}
		}
		if (count == batch || err != nil) && batch < n {
			grown := min(2*batch, n)
			for i := batch; i < grown; i++ {
				fill(i)
			}
			batch = grown
		}
		if err == nil {
			failures = 0
			continue
		}
		select {
		case <-e.done:
			return
		default:
		}
		// A closed device ends the pump. Other errors can be transient
		// (wireguard's tun reports a segment it cannot split, for one):
		// give up only when they persist.
		if failures++; errors.Is(err, os.ErrClosed) || failures >= maxReadFailures {
			onReadError(err)
			return
		}
	}
}

// deliver hands the packet in v (size bytes after the headroom) to the
// stack, or answers it with an ICMP error if it is neither TCP nor UDP to
// a UDP service. It reports whether the stack took v; if not, v can be
// read into again.
func (e *linkEndpoint) deliver(v *buffer.View, size int) bool {
	pkt := v.AsSlice()[headroom : headroom+size]
	if len(pkt) == 0 {
		return false
	}
	var proto tcpip.NetworkProtocolNumber
	var transport uint8
	switch header.IPVersion(pkt) {
	case header.IPv4Version:
		if len(pkt) < header.IPv4MinimumSize {
			return false
		}
		proto, transport = header.IPv4ProtocolNumber, header.IPv4(pkt).Protocol()
	case header.IPv6Version:
		if len(pkt) < header.IPv6MinimumSize {
			return false
		}
		proto, transport = header.IPv6ProtocolNumber, header.IPv6(pkt).NextHeader()
	default:
		return false
	}
	if transport != uint8(header.TCPProtocolNumber) && !ipv6ExtensionHeader(proto, transport) {
		if u := e.udp.Load(); transport != ipProtoUDP || u == nil || !u.udpService(pkt, proto) {
			e.answer(pkt)
			return false
		}
	}
	e.mu.RLock()
	d := e.dispatcher
	e.mu.RUnlock()
	if d == nil {
		return false
	}
	payload, took := packetPayload(v, pkt, proto)
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: payload})
	d.DeliverNetworkPacket(proto, pb)
	pb.DecRef()
	return took
}

// copyBelow is the packet size up to which deliver copies a packet out of
// the 64 KiB read buffer instead of handing the buffer over: copying a small
// packet costs less than a fresh 64 KiB buffer for the next read (gVisor
// zeroes every chunk it hands out).
const copyBelow = 16 << 10

// packetPayload makes the packet in pkt (which lies in v, after the
// headroom) a gVisor buffer, and reports whether that buffer took v.
//
// The IP and TCP headers always go into a small chunk of their own. gVisor
// holds a second reference to the network header's chunk while it reads the
// TCP header, and reading a header from a shared chunk clones the whole
// chunk: with headers in the 64 KiB read buffer, every packet, even a bare
// ACK, cost a 64 KiB allocation and copy. Small packets are copied whole;
// a large one keeps its payload in v, behind a separate header chunk.
func packetPayload(v *buffer.View, pkt []byte, proto tcpip.NetworkProtocolNumber) (buffer.Buffer, bool) {
	if len(pkt) <= copyBelow {
		return buffer.MakeWithView(buffer.NewViewWithData(pkt)), false
	}
	hdr := tcpHeaderEnd(pkt, proto)
	if hdr == 0 {
		// Not a plain TCP packet (fragment, extension headers, bad
		// lengths): hand it over as one piece; gVisor sorts it out.
		v.TrimFront(headroom)
		v.CapLength(len(pkt))
		return buffer.MakeWithView(v), true
	}
	b := buffer.MakeWithView(buffer.NewViewWithData(pkt[:hdr]))
	v.TrimFront(headroom + hdr)
	v.CapLength(len(pkt) - hdr)
	b.Append(v)
	return b, true
}

// tcpHeaderEnd returns where the TCP header of an unfragmented IPv4 packet,
// or of an IPv6 packet whose next header is TCP, ends; 0 for anything else.
func tcpHeaderEnd(pkt []byte, proto tcpip.NetworkProtocolNumber) int {
	var ipLen int
	switch proto {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(pkt)
		if ip.Protocol() != uint8(header.TCPProtocolNumber) || ip.More() || ip.FragmentOffset() != 0 {
			return 0
		}
		ipLen = int(ip.HeaderLength())
		if ipLen < header.IPv4MinimumSize {
			return 0
		}
	case header.IPv6ProtocolNumber:
		if header.IPv6(pkt).NextHeader() != uint8(header.TCPProtocolNumber) {
			return 0
		}
		ipLen = header.IPv6MinimumSize
	default:
		return 0
	}
	if len(pkt) < ipLen+header.TCPMinimumSize {
		return 0
	}
	tcpLen := int(header.TCP(pkt[ipLen:]).DataOffset())
	if tcpLen < header.TCPMinimumSize || ipLen+tcpLen > len(pkt) {
		return 0
	}
	return ipLen + tcpLen
}

// answer queues the ICMP error for a non-TCP packet, if it deserves one.
func (e *linkEndpoint) answer(pkt []byte) {
	bp := e.pool.Get().(*[]byte)
	reply := e.reject(pkt, (*bp)[headroom:headroom])
	if reply == nil {
		e.putBuf(bp)
		return
	}
	*bp = (*bp)[:headroom+len(reply)]
	e.enqueue(bp)
}

func (e *linkEndpoint) enqueue(bp *[]byte) bool {
	e.pending.Add(1)
	select {
	case e.out <- bp:
		return true
	default:
	}
	// A full queue drops, but never a SYN-ACK: a lost one costs the
	// application a second or more (its SYN retransmission, or ours
	// of the SYN-ACK), and under load its handshake's bound. Waiting
	// for the writer is safe: it takes none of the stack's locks.
	if isSYN((*bp)[headroom:]) {
		select {
		case e.out <- bp:
			return true
		case <-e.done:
		}
	}
	e.pending.Add(-1)
	e.putBuf(bp)
	return false
}

// writeNow writes a small packet to the device on the caller's goroutine
// when nothing is waiting to be written (so packets keep their order) and
// no write is running, and reports whether it did. A flow's set-up and a
// request's answer are single small packets: handing each to the writer
// goroutine cost a wake-up of it, with each flow's latency under load.
//
// A SYN-ACK is never written here. gVisor sends it holding the new
// endpoint's lock, and the kernel answers a TUN write at once, within the
// write: the application's ACK (and first data) could reach the stack
// before the lock was released, and gVisor leaves a segment that finds
// the endpoint locked queued until the next one arrives. A client whose SYN
// was retransmitted (a slow set-up) sends nothing more for 3 s, so the
// handshake missed its bound: with 1,000 flows on a race-enabled build,
// 450-650 flows were reset so, 113 with this rule (e2e/load_test.go).
func (e *linkEndpoint) writeNow(bp *[]byte) bool {
	if len(*bp) > headroom+smallPacket || isSYN((*bp)[headroom:]) || e.pending.Load() != 0 || !e.wmu.TryLock() {
		return false
	}
	defer e.wmu.Unlock()
	if e.pending.Load() != 0 {
		return false
	}
	e.direct = append(e.direct[:0], *bp)
	_, _ = e.dev.Write(e.direct, headroom)
	e.direct[0] = nil
	e.putBuf(bp)
	return true
}

// outbound writes queued packets to the device, as many per call as are
// waiting (up to the device's batch size), so the device can coalesce them.
func (e *linkEndpoint) outbound() {
	defer e.wg.Done()
	max := e.dev.BatchSize()
	batch := make([]*[]byte, 0, max)
	bufs := make([][]byte, 0, max)
	for {
		select {
		case bp := <-e.out:
			batch = append(batch, bp)
		case <-e.done:
			return
		}
	fill:
		for len(batch) < max {
			select {
			case bp := <-e.out:
				batch = append(batch, bp)
			default:
				break fill
			}
		}
		for _, bp := range batch {
			bufs = append(bufs, *bp)
		}
		// A failed write loses these packets; TCP retransmits, and a dead
		// device is reported by the reader.
		e.wmu.Lock()
		_, _ = e.dev.Write(bufs, headroom)
		e.wmu.Unlock()
		e.pending.Add(-int64(len(batch)))
		for i, bp := range batch {
			e.putBuf(bp)
			batch[i], bufs[i] = nil, nil
		}
		batch, bufs = batch[:0], bufs[:0]
	}
}

// WritePackets implements stack.LinkWriter. The caller keeps ownership of
// pkts; their bytes are copied.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := pkt.Size()
		if size > maxPacket {
			continue
		}
		bp := e.getBuf(size)
		b := (*bp)[:headroom+size]
		// The views from the packet's first header on (AsSlices would
		// allocate a slice of them per packet).
		vl, skip := pkt.AsViewList()
		off := headroom
		for v := vl.Front(); v != nil; v = v.Next() {
			s := v.AsSlice()
			if skip >= len(s) {
				skip -= len(s)
				continue
			}
			off += copy(b[off:], s[skip:])
			skip = 0
		}
		*bp = b
		if e.writeNow(bp) {
			n++
			continue
		}
		if !e.enqueue(bp) {
			if n == 0 {
				return 0, &tcpip.ErrNoBufferSpace{}
			}
			break
		}
		n++
	}
	return n, nil
}

// smallPacket is the largest packet an outbound buffer of the small pool
// takes: ACKs and short answers, most of the packets, do not tie up 64 KiB
// each while they wait in the queue.
const smallPacket = 2048 - headroom

// getBuf returns a pooled buffer for an outbound packet of size bytes.
func (e *linkEndpoint) getBuf(size int) *[]byte {
	if size <= smallPacket {
		return e.small.Get().(*[]byte)
	}
	return e.pool.Get().(*[]byte)
}

// putBuf returns a buffer from getBuf (or the ICMP path) to its pool.
func (e *linkEndpoint) putBuf(bp *[]byte) {
	*bp = (*bp)[:cap(*bp)]
	if cap(*bp) == headroom+smallPacket {
		e.small.Put(bp)
		return
	}
	e.pool.Put(bp)
}

func (e *linkEndpoint) close() {
	e.closeOnce.Do(func() { close(e.done) })
}

// MTU implements stack.LinkEndpoint.
func (e *linkEndpoint) MTU() uint32 { return e.mtu }

// SetMTU implements stack.LinkEndpoint.
func (e *linkEndpoint) SetMTU(mtu uint32) { e.mtu = mtu }

// MaxHeaderLength implements stack.LinkEndpoint: there is no link header.
func (*linkEndpoint) MaxHeaderLength() uint16 { return 0 }

// LinkAddress implements stack.LinkEndpoint: a TUN has none.
func (*linkEndpoint) LinkAddress() tcpip.LinkAddress { return "" }

// SetLinkAddress implements stack.LinkEndpoint.
func (*linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. The device checksums nothing
// for us, but the kernel verifies what we write and we trust what it hands
// us (it computed or verified those checksums), so receive checks are off.
func (*linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityRXChecksumOffload
}

// Attach implements stack.LinkEndpoint.
func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	e.dispatcher = d
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *linkEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.
func (e *linkEndpoint) Wait() { e.wg.Wait() }

// ARPHardwareType implements stack.LinkEndpoint.
func (*linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }

// AddHeader implements stack.LinkEndpoint.
func (*linkEndpoint) AddHeader(*stack.PacketBuffer) {}

// ParseHeader implements stack.LinkEndpoint.
func (*linkEndpoint) ParseHeader(*stack.PacketBuffer) bool { return true }

// Close implements stack.LinkEndpoint.
func (*linkEndpoint) Close() {}

// SetOnCloseAction implements stack.LinkEndpoint.
func (*linkEndpoint) SetOnCloseAction(func()) {}

// ipv6ExtensionHeader reports whether an IPv6 packet's next header is an
// extension header; the stack then finds the transport protocol itself.
func ipv6ExtensionHeader(proto tcpip.NetworkProtocolNumber, next uint8) bool {
	if proto != header.IPv6ProtocolNumber {
		return false
	}
	switch header.IPv6ExtensionHeaderIdentifier(next) {
	case header.IPv6HopByHopOptionsExtHdrIdentifier, header.IPv6RoutingExtHdrIdentifier,
		header.IPv6FragmentExtHdrIdentifier, header.IPv6DestinationOptionsExtHdrIdentifier:
		return true
	}
	return false
}

// isSYN tells whether pkt is a TCP segment with SYN set (from the
// stack: a SYN-ACK).
func isSYN(pkt []byte) bool {
	var tcp []byte
	switch header.IPVersion(pkt) {
	case header.IPv4Version:
		if len(pkt) < header.IPv4MinimumSize || header.IPv4(pkt).Protocol() != uint8(header.TCPProtocolNumber) {
			return false
		}
		ihl := int(header.IPv4(pkt).HeaderLength())
		if ihl < header.IPv4MinimumSize || ihl > len(pkt) {
			return false
		}
		tcp = pkt[ihl:]
	case header.IPv6Version:
		if len(pkt) < header.IPv6MinimumSize || header.IPv6(pkt).NextHeader() != uint8(header.TCPProtocolNumber) {
			return false
		}
		tcp = pkt[header.IPv6MinimumSize:]
	default:
		return false
	}
	return len(tcp) >= header.TCPMinimumSize && header.TCP(tcp).Flags().Contains(header.TCPFlagSyn)
}
