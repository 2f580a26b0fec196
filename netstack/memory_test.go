package netstack

import (
	"bytes"
	"io"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

// The router cuts the buffers of stalled flows through this contract.
var _ router.Buffers = (*conn)(nil)

// A flow whose application does not read: the send buffer is full and
// says so; a cut keeps reporting the size from before it until it is put
// back, and putting it back restores that size. The receive queue is
// counted exactly.
func TestFlowBuffers(t *testing.T) {
	app, flow := acceptedConn(t, 1500)
	ops := flow.ep.SocketOptions()
	size := ops.GetSendBufferSize()
	if send, recv := flow.Buffered(); send != size || recv != 0 {
		t.Fatalf("an idle flow: buffered (%d, %d), want the send buffer's size %d and 0", send, recv, size)
	}

	// The application sends and shunt does not read: the receive queue.
	msg := bytes.Repeat([]byte("a"), 10000)
	if _, err := app.Write(msg); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the receive queue to hold what the application sent", func() bool {
		_, recv := flow.Buffered()
		return recv == int64(len(msg))
	})
	rcvSize := ops.GetReceiveBufferSize()
	flow.ShrinkReceive(true)
	if got := ops.GetReceiveBufferSize(); got != cutBuffer {
		t.Errorf("receive buffer cut to %d, want %d", got, cutBuffer)
	}
	flow.ShrinkReceive(false)
	if got := ops.GetReceiveBufferSize(); got != rcvSize {
		t.Errorf("receive buffer put back to %d, want %d", got, rcvSize)
	}

	// shunt writes and the application does not read: the write blocks.
	written := make(chan error, 1)
	big := make([]byte, 4*size)
	go func() {
		_, err := flow.Write(big)
		written <- err
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case err := <-written:
		t.Fatalf("a write of 4x the send buffer to an application that does not read returned: %v", err)
	default:
	}
	// (gVisor tuned the size while the queue filled.)
	size = ops.GetSendBufferSize()
	flow.ShrinkSend(true)
	flow.ShrinkSend(true) // a second cut keeps the first's size
	if got := ops.GetSendBufferSize(); got != cutBuffer {
		t.Errorf("send buffer cut to %d, want %d", got, cutBuffer)
	}
	if send, _ := flow.Buffered(); send != size {
		t.Errorf("buffered while cut: send %d, want the size before the cut, %d", send, size)
	}
	// The application drains: the write returns.
	go io.Copy(io.Discard, app)
	select {
	case err := <-written:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not return once the application read")
	}
	flow.ShrinkSend(false)
	if got := ops.GetSendBufferSize(); got != size {
		t.Errorf("send buffer put back to %d, want %d", got, size)
	}
	if send, _ := flow.Buffered(); send != size {
		t.Errorf("buffered after the cut: send %d, want %d", send, size)
	}
}

// idleStackHeap bounds the Go heap a stack holds at rest (TestIdleStackHeap).
// It holds about 0.2 MiB: gVisor's structures, the link endpoint's queue
// and pools, and two 64 KiB read buffers. The bound is generous so that
// gVisor's own growth does not trip it, and well below the 8 MiB of read
// buffers a stack once held from the start.
const idleStackHeap = 3 << 20

// heapInUse is the bytes of live objects on the Go heap, after two
// collections (the second empties sync.Pool's victim caches).
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// A stack at rest, after a first packet, holds little of the Go heap; the
// device reports wireguard's batch for a Linux TUN with offloads (128)
// and reads one packet at a time, as tun's direct reader does. Not a
// timing: the heap's live bytes, before and after.
func TestIdleStackHeap(t *testing.T) {
	dev := tun.NewMemory(maxPacket, 128)
	before := heapInUse()
	s, err := New(dev, refuseAll{}, Options{MTU: maxPacket})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// An ACK for no connection: the stack answers it with a RST.
	dev.Inject(tcpPacket(52))
	select {
	case <-dev.Outbound():
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from the stack to an ACK for no connection")
	}
	grown := heapInUse() - before
	t.Logf("a stack at rest holds %d KiB of the Go heap", grown>>10)
	if grown > idleStackHeap {
		t.Errorf("a stack at rest holds %d KiB of the Go heap, more than %d KiB", grown>>10, idleStackHeap>>10)
	}
}
