package netstack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/shunt-dev/shunt/netstack/netstacktest"
	"github.com/shunt-dev/shunt/tun"
)

// handlerFunc adapts a function to Handler.
type handlerFunc func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error))

func (f handlerFunc) HandleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) func() {
	f(ctx, src, dst, host, accept)
	return nil
}

func startStack(t *testing.T, h Handler) (*Stack, *netstacktest.AppHost) {
	t.Helper()
	return startStackMTU(t, h, 1500)
}

func startStackMTU(t *testing.T, h Handler, mtu int) (*Stack, *netstacktest.AppHost) {
	t.Helper()
	dev := tun.NewMemory(mtu, 8)
	app := netstacktest.NewAppHost(t, dev, mtu)
	s, err := New(dev, h, Options{MTU: mtu})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, app
}

func TestEchoThroughStack(t *testing.T) {
	type seen struct{ src, dst netip.AddrPort }
	flows := make(chan seen, 4)
	_, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		flows <- seen{src, dst}
		c, err := accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}))
	for _, dst := range []netip.AddrPort{
		netip.MustParseAddrPort("10.1.2.3:25"),
		netip.MustParseAddrPort("[fd00::5]:993"),
	} {
		t.Run(dst.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := app.Dial(ctx, dst)
			if err != nil {
				t.Fatalf("dial %v: %v", dst, err)
			}
			defer c.Close()
			f := <-flows
			if f.dst != dst {
				t.Errorf("handler saw dst %v, want %v", f.dst, dst)
			}
			if want := netstacktest.Addr4; dst.Addr().Is6() {
				want = netstacktest.Addr6
				if f.src.Addr() != want {
					t.Errorf("handler saw src %v, want %v", f.src, want)
				}
			} else if f.src.Addr() != want {
				t.Errorf("handler saw src %v, want %v", f.src, want)
			}
			msg := strings.Repeat("hello through the stack ", 10000)
			go c.Write([]byte(msg))
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != msg {
				t.Fatal("echo differs")
			}
		})
	}
}

func TestRejectedFlowIsRefused(t *testing.T) {
	_, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		// Return without accepting: the application must see a RST.
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := app.Dial(ctx, netip.MustParseAddrPort("10.1.2.3:25"))
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial = %v, want connection refused", err)
	}
}

// The handshake must not complete before the handler accepts: the
// application's connect stays pending while the upstream is being dialled.
func TestDialBeforeAccept(t *testing.T) {
	release := make(chan struct{})
	_, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		<-release
		c, err := accept()
		if err == nil {
			c.Close()
		}
	}))
	dialed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := app.Dial(ctx, netip.MustParseAddrPort("10.1.2.3:80"))
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	select {
	case err := <-dialed:
		t.Fatalf("connect completed before the handler accepted (err=%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-dialed; err != nil {
		t.Fatalf("connect after accept: %v", err)
	}
}

// UDP to a captured destination gets "port unreachable" at once, which a
// connected UDP socket reports as "connection refused".
func TestUDPGetsPortUnreachable(t *testing.T) {
	_, app := startStack(t, handlerFunc(func(context.Context, netip.AddrPort, netip.AddrPort, string, func() (net.Conn, error)) {}))
	for _, dst := range []string{"10.1.2.3", "fd00::5"} {
		a := netip.MustParseAddr(dst)
		proto := ipv4.ProtocolNumber
		if a.Is6() {
			proto = ipv6.ProtocolNumber
		}
		c, err := gonet.DialUDP(app.Stack(), nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: 53}, proto)
		if err != nil {
			t.Fatal(err)
		}
		// gVisor's UDP endpoint records the ICMP error and returns it from
		// the next call, but a blocked Read is not woken by it: poll with
		// writes instead.
		deadline := time.Now().Add(5 * time.Second)
		for err == nil && time.Now().Before(deadline) {
			_, err = c.Write([]byte("query"))
			time.Sleep(10 * time.Millisecond)
		}
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("UDP to %s: read = %v, want connection refused", dst, err)
		}
	}
}

func TestCloseEndsFlows(t *testing.T) {
	started := make(chan struct{})
	s, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		c, err := accept()
		if err != nil {
			return
		}
		close(started)
		io.Copy(io.Discard, c) // returns when the stack resets the flow
		c.Close()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := app.Dial(ctx, netip.MustParseAddrPort("10.1.2.3:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-started
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while a flow was open")
	}
}

// Abort resets the application's connection.
func TestAbortResets(t *testing.T) {
	_, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		c, err := accept()
		if err != nil {
			return
		}
		c.Write([]byte("partial"))
		time.Sleep(50 * time.Millisecond)
		c.(interface{ Abort() }).Abort()
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := app.Dial(ctx, netip.MustParseAddrPort("10.1.2.3:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read %q, %v; want a connection reset", got, err)
	}
}

// The server side closes first (our end enters what would be TIME-WAIT),
// then the application reuses its port at once: the new connection must
// go through, not stall until TIME-WAIT ends.
func TestPortReuseAfterServerClose(t *testing.T) {
	_, app := startStack(t, handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		c, err := accept()
		if err != nil {
			return
		}
		c.Write([]byte("bye"))
		c.Close() // close first, like a one-shot server
	}))
	local := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(netstacktest.Addr4.AsSlice()), Port: 40001}
	remote := tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFromSlice(netip.MustParseAddr("10.1.2.3").AsSlice()), Port: 80}
	for i := range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := gonet.DialTCPWithBind(ctx, app.Stack(), local, remote, ipv4.ProtocolNumber)
		cancel()
		if err != nil {
			t.Fatalf("connection %d from the same port: %v", i+1, err)
		}
		if b, err := io.ReadAll(c); err != nil || string(b) != "bye" {
			t.Fatalf("connection %d read %q, %v", i+1, b, err)
		}
		c.Close()
		time.Sleep(50 * time.Millisecond) // let the app host's side finish closing
	}
}
