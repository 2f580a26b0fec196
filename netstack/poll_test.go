package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// acceptedConn starts a stack whose handler hands the accepted flow to the
// test, and dials it from the app host.
func acceptedConn(t *testing.T, mtu int) (app net.Conn, flow *conn) {
	t.Helper()
	got := make(chan *conn, 1)
	_, host := startStackMTU(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		c, err := accept()
		if err != nil {
			t.Error(err)
			return
		}
		got <- c.(*conn)
	}), mtu)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	app, err := host.Dial(ctx, netip.MustParseAddrPort("10.9.8.7:80"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	select {
	case flow = <-got:
	case <-ctx.Done():
		t.Fatal("the flow never reached the handler")
	}
	t.Cleanup(func() { flow.Close() })
	return app, flow
}

// waitReadable waits for a notification, then reads what TryRead has.
func waitReadable(t *testing.T, c *conn, ready <-chan struct{}, want int) ([]byte, error) {
	t.Helper()
	var got []byte
	buf := make([]byte, 64<<10)
	deadline := time.After(5 * time.Second)
	for {
		n, err := c.TryRead(buf)
		got = append(got, buf[:n]...)
		if err != nil || len(got) >= want && want > 0 {
			return got, err
		}
		if n > 0 {
			continue
		}
		select {
		case <-ready:
		case <-deadline:
			t.Fatalf("no notification: read %d bytes of %d", len(got), want)
		}
	}
}

func TestTryReadAndNotify(t *testing.T) {
	app, flow := acceptedConn(t, 1500)
	ready := make(chan struct{}, 1)
	stop := flow.NotifyReadable(func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	defer stop()
	buf := make([]byte, 16)
	if n, err := flow.TryRead(buf); n != 0 || err != nil {
		t.Fatalf("TryRead on a quiet flow = %d, %v; want 0, nil", n, err)
	}
	if _, err := app.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := waitReadable(t, flow, ready, 5)
	if err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want hello", got, err)
	}
	app.(interface{ CloseWrite() error }).CloseWrite()
	if _, err := waitReadable(t, flow, ready, 0); err != io.EOF {
		t.Fatalf("after the application's FIN: %v, want io.EOF", err)
	}
	flow.Close()
	if _, err := flow.TryRead(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v, want net.ErrClosed", err)
	}
}

// With the 64 KiB MTU the packets are large: deliver splits the headers off
// (see packetPayload), and the bytes must arrive intact and in order.
func TestLargePacketsIntact(t *testing.T) {
	app, flow := acceptedConn(t, maxPacket)
	ready := make(chan struct{}, 1)
	defer flow.NotifyReadable(func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})()
	data := make([]byte, 4<<20)
	rand.Read(data)
	go app.Write(data)
	got, err := waitReadable(t, flow, ready, len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), equal = %v", len(got), err, bytes.Equal(got, data))
	}
}

func TestPacketPayloadSplitsHeaders(t *testing.T) {
	const size = 40 << 10
	pkt := make([]byte, size)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{TotalLength: size, Protocol: uint8(header.TCPProtocolNumber), TTL: 64,
		SrcAddr: tcpip.AddrFrom4([4]byte{192, 0, 2, 1}), DstAddr: tcpip.AddrFrom4([4]byte{10, 0, 0, 1})})
	header.TCP(pkt[header.IPv4MinimumSize:]).Encode(&header.TCPFields{DataOffset: 32, Flags: header.TCPFlagAck})
	for i := header.IPv4MinimumSize + 32; i < size; i++ {
		pkt[i] = byte(i)
	}
	if got := tcpHeaderEnd(pkt, header.IPv4ProtocolNumber); got != 52 {
		t.Fatalf("tcpHeaderEnd = %d, want 52", got)
	}
	v := buffer.NewViewSize(headroom + maxPacket)
	copy(v.AsSlice()[headroom:], pkt)
	b, took := packetPayload(v, v.AsSlice()[headroom:headroom+size], header.IPv4ProtocolNumber)
	defer b.Release()
	if !took {
		t.Fatal("a large packet was copied instead of handed over")
	}
	if !bytes.Equal(b.Flatten(), pkt) {
		t.Fatal("the payload differs from the packet")
	}
	first, ok := b.PullUp(0, 52)
	if !ok || len(first.AsSlice()) != 52 {
		t.Fatal("the headers are not in one piece")
	}
	// Small packets are copied, and the read buffer stays with the pump.
	small := pkt[:100]
	header.IPv4(small).SetTotalLength(100)
	w := buffer.NewViewSize(headroom + maxPacket)
	defer w.Release()
	copy(w.AsSlice()[headroom:], small)
	sb, took := packetPayload(w, w.AsSlice()[headroom:headroom+100], header.IPv4ProtocolNumber)
	defer sb.Release()
	if took || !bytes.Equal(sb.Flatten(), small) {
		t.Fatalf("small packet: took = %v, intact = %v", took, bytes.Equal(sb.Flatten(), small))
	}
	// A fragment is not split.
	header.IPv4(pkt).SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 0)
	if got := tcpHeaderEnd(pkt, header.IPv4ProtocolNumber); got != 0 {
		t.Fatalf("tcpHeaderEnd of a fragment = %d, want 0", got)
	}
}
