package netstack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/shunt-dev/shunt/netstack/netstacktest"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

func startStackOpts(t *testing.T, h Handler, opts Options) (*Stack, *netstacktest.AppHost, *tun.Memory) {
	t.Helper()
	opts.MTU = 1500
	dev := tun.NewMemory(opts.MTU, 8)
	app := netstacktest.NewAppHost(t, dev, opts.MTU)
	s, err := New(dev, h, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, app, dev
}

// Over MaxInFlight, a SYN is refused at once: the application gets a
// refused connection, not a SYN dropped into a queue that does not move.
func TestSYNsOverLimitRefused(t *testing.T) {
	const max = 4
	release := make(chan struct{})
	var waiting atomic.Int32
	log, hook := test.NewNullLogger()
	_, app, _ := startStackOpts(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		waiting.Add(1)
		select { // an upstream that hangs
		case <-release:
		case <-ctx.Done():
		}
	}), Options{MaxInFlight: max, Log: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pending sync.WaitGroup
	for i := range max {
		pending.Add(1)
		go func() {
			defer pending.Done()
			c, err := app.Dial(ctx, netip.AddrPortFrom(netip.MustParseAddr("10.9.9.9"), uint16(1000+i)))
			if err == nil {
				c.Close()
			}
		}()
	}
	waitUntil(t, "the handler to hold MaxInFlight set-ups", func() bool { return waiting.Load() == max })

	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	_, err := app.Dial(dctx, netip.MustParseAddrPort("10.1.2.3:25"))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("connect over MaxInFlight = %v, want connection refused", err)
	}
	if n := waiting.Load(); n != max {
		t.Errorf("the handler saw %d flows, want %d (the refused one must not reach it)", n, max)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "refusing new flows") {
		t.Errorf("last log %v, want a warning that flows are refused", e)
	}
	close(release)
	cancel()
	pending.Wait()
}

// synPacket is a TCP SYN from src to dst, as a host that never answers the
// SYN-ACK (a spoofed source) would send it.
func synPacket(src, dst netip.AddrPort) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.TCPMinimumSize)
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), Protocol: uint8(header.TCPProtocolNumber), TTL: 64,
		SrcAddr: tcpip.AddrFrom4(src.Addr().As4()), DstAddr: tcpip.AddrFrom4(dst.Addr().As4())})
	ip.SetChecksum(^ip.CalculateChecksum())
	tcp := header.TCP(pkt[header.IPv4MinimumSize:])
	tcp.Encode(&header.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), SeqNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagSyn, WindowSize: 65535})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
	tcp.SetChecksum(^checksum.Checksum(tcp, xsum))
	return pkt
}

// upstreams is a fake tunnel and direct dialer for the router whose
// connections record that they were closed. Dials to hang block until the
// flow's dial context ends.
type upstreams struct {
	hang    netip.AddrPort
	mu      sync.Mutex
	conns   []*closeConn
	pending atomic.Int32
}

type closeConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *closeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func (u *upstreams) dial(ctx context.Context, addr string) (net.Conn, error) {
	if addr == u.hang.String() {
		u.pending.Add(1)
		defer u.pending.Add(-1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	a, b := net.Pipe()
	go func() { io.Copy(b, b); b.Close() }() // echo
	c := &closeConn{Conn: a, closed: make(chan struct{})}
	u.mu.Lock()
	u.conns = append(u.conns, c)
	u.mu.Unlock()
	return c, nil
}

func (u *upstreams) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	return u.dial(ctx, addr)
}

func (u *upstreams) DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error) {
	return u.dial(ctx, addr)
}

func (u *upstreams) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return u.dial(ctx, addr)
}

func tunnelRouter(u *upstreams, log logrus.FieldLogger) *router.Router {
	return router.New([]router.Rule{{Name: "all", Action: router.Tunnel, Profile: "gw"}},
		router.Options{Tunnels: u, Direct: u, Log: log})
}

// A SYN whose source never completes the handshake (spoofed) must not keep
// the flow's upstream open for gVisor's two minutes of SYN-ACK retries:
// the handshake is bounded, and the router then closes the upstream.
func TestSpoofedSYNClosesUpstream(t *testing.T) {
	u := &upstreams{}
	log, hook := test.NewNullLogger()
	r := tunnelRouter(u, log)
	_, _, dev := startStackOpts(t, r.StackHandler(), Options{HandshakeTimeout: 200 * time.Millisecond})
	// 192.0.2.99 is not the application host's address: it drops the
	// SYN-ACK, as a spoofed source's network would.
	dev.Inject(synPacket(netip.MustParseAddrPort("192.0.2.99:4000"), netip.MustParseAddrPort("10.1.2.3:25")))
	waitUntil(t, "the router to dial the upstream", func() bool {
		u.mu.Lock()
		defer u.mu.Unlock()
		return len(u.conns) == 1
	})
	u.mu.Lock()
	c := u.conns[0]
	u.mu.Unlock()
	select {
	case <-c.closed:
	case <-time.After(60 * time.Second):
		t.Fatal("the upstream of a handshake that never completes is still open after 60 s")
	}
	waitUntil(t, "the handshake failure to be logged", func() bool {
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "application handshake failed") {
				return true
			}
		}
		return false
	})
	r.Wait()
}

// Thousands of set-ups hanging on one destination (a blackholed port
// behind the gateway) leave room for a flow to another destination, and
// the ones over the destination's share are refused at once. Through the
// real stack and router: the stack's own cap once let one destination
// fill every slot.
func TestOneDestinationDoesNotBlockOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 5,000 connections")
	}
	blackholed := netip.MustParseAddrPort("10.1.2.3:9")
	u := &upstreams{hang: blackholed}
	log, _ := test.NewNullLogger()
	r := tunnelRouter(u, log)
	s, app, _ := startStackOpts(t, r.StackHandler(), Options{})

	const flood = 5000 // more than the 4096 the stack used to take in all
	ctx, cancel := context.WithCancel(context.Background())
	var refused, other atomic.Int32
	var wg sync.WaitGroup
	share := int32(router.DefaultMaxSetupsPerDestination)
	// In rounds, so that the application host's queue (1,024 packets)
	// does not drop SYNs that it would then resend seconds later.
	const round = 500
	for started := int32(0); started < flood; {
		for range min(round, flood-started) {
			started++
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := app.Dial(ctx, blackholed)
				switch {
				case err == nil:
					c.Close()
					other.Add(1)
				case strings.Contains(err.Error(), "refused"):
					refused.Add(1)
				case ctx.Err() == nil:
					other.Add(1)
				}
			}()
		}
		waitUntil(t, "the connects so far to be pending or refused", func() bool {
			return refused.Load()+u.pending.Load()+other.Load() == started
		})
	}
	if n := u.pending.Load(); n != share {
		t.Errorf("%d set-ups to the blackholed destination pending, want its share, %d", n, share)
	}
	if n := refused.Load(); n != flood-share {
		t.Errorf("%d connects refused at once, want the %d over the destination's share", n, flood-share)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dcancel()
	c, err := app.Dial(dctx, netip.MustParseAddrPort("10.1.2.4:25"))
	if err != nil {
		t.Fatalf("a flow to another destination: %v", err)
	}
	echoed := make([]byte, 5)
	c.Write([]byte("hello"))
	if _, err := io.ReadFull(c, echoed); err != nil || string(echoed) != "hello" {
		t.Fatalf("echo through the other flow: %q, %v", echoed, err)
	}
	c.Close()
	if n := u.pending.Load(); n != share {
		t.Errorf("%d set-ups to the blackholed destination still pending, want %d: the other flow must not have waited for them", n, share)
	}
	if n := other.Load(); n != 0 {
		t.Errorf("%d connects to the blackholed destination neither refused nor pending", n)
	}
	cancel()
	wg.Wait()
	s.Close()
	r.Wait()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
