package routertest_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/router/routertest"
)

// The Dialer is every dialer of the data path.
var (
	_ router.Tunnels = (*routertest.Dialer)(nil)
	_ router.Dialer  = (*routertest.Dialer)(nil)
	_ broker.Dialer  = (*routertest.Dialer)(nil)
)

func TestDialer(t *testing.T) {
	refused := errors.New("refused")
	d := &routertest.Dialer{
		Fail: func(c routertest.Call) error {
			if c.Profile == "bad" {
				return refused
			}
			return nil
		},
		Hang: func(c routertest.Call) bool { return c.Addr == "10.9.9.9:1" },
	}
	ctx := context.Background()
	c, err := d.Dial(ctx, "p", "10.0.0.1:25")
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	c.Close()
	if _, err := d.DialVia(ctx, "bad", "10.0.0.2", "10.0.0.2:25"); !errors.Is(err, refused) {
		t.Errorf("failing dial: %v", err)
	}
	hctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := d.DialContext(hctx, "tcp", "10.9.9.9:1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hanging dial: %v", err)
	}
	want := []string{"p/10.0.0.1:25", "bad@10.0.0.2/10.0.0.2:25", "direct/10.9.9.9:1"}
	if got := d.Dials(); !slices.Equal(got, want) {
		t.Errorf("dials %v, want %v", got, want)
	}
	if conns := d.Conns(); len(conns) != 1 || !conns[0].Closed() || d.Pending() != 0 {
		t.Errorf("conns %v (closed: want the one), pending %d", conns, d.Pending())
	}
}
