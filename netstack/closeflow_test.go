package netstack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/state"
	"github.com/sirupsen/logrus/hooks/test"
)

// The router's CloseFlow, through the stack: the application of the flow
// it names sees its connection reset (not a clean end), that flow's
// upstream is closed, another flow goes on; a flow reset while its
// upstream is being dialled gets a refused connection.
func TestCloseFlowThroughStack(t *testing.T) {
	hang := netip.MustParseAddrPort("10.1.2.3:9")
	u := &upstreams{hang: hang}
	log, _ := test.NewNullLogger()
	r := tunnelRouter(u, log)
	_, app, _ := startStackOpts(t, r.StackHandler(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var conns []net.Conn
	for _, dst := range []string{"10.1.2.3:25", "10.1.2.3:26"} {
		c, err := app.Dial(ctx, netip.MustParseAddrPort(dst))
		if err != nil {
			t.Fatalf("dial %s: %v", dst, err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("echo through %s: %v", dst, err)
		}
		conns = append(conns, c)
	}
	flows := r.Flows()
	if len(flows) != 2 || flows[0].Dst != "10.1.2.3:25" || flows[0].State != state.FlowOpen {
		t.Fatalf("Flows() = %+v", flows)
	}
	if !r.CloseFlow(flows[0].ID) {
		t.Fatal("CloseFlow = false")
	}
	got, err := io.ReadAll(conns[0])
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Errorf("the reset flow's application read %q, %v; want a connection reset", got, err)
	}
	u.mu.Lock()
	up := u.conns[0]
	u.mu.Unlock()
	select {
	case <-up.closed:
	case <-time.After(time.Minute):
		t.Error("the reset flow's upstream was not closed")
	}
	conns[1].Write([]byte("pong"))
	if b := make([]byte, 4); func() error { _, err := io.ReadFull(conns[1], b); return err }() != nil || string(b) != "pong" {
		t.Errorf("the other flow stopped echoing: %q", b)
	}

	// Reset while the upstream dial hangs: the connect is refused.
	dialed := make(chan error, 1)
	go func() {
		c, err := app.Dial(ctx, hang)
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	waitUntil(t, "the set-up to wait for its upstream", func() bool { return u.pending.Load() == 1 })
	var id uint64
	for _, f := range r.Flows() {
		if f.Dst == hang.String() && f.State == state.FlowSettingUp {
			id = f.ID
		}
	}
	if id == 0 || !r.CloseFlow(id) {
		t.Fatalf("no flow being set up to %v to reset: %+v", hang, r.Flows())
	}
	if err := <-dialed; err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("connect of a flow reset during set-up = %v, want connection refused", err)
	}
}
