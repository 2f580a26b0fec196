package netstack

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// fakeHosts hands out names for addresses of the fake ranges.
type fakeHosts map[netip.Addr]string

func (f fakeHosts) Host(a netip.Addr) (string, bool) {
	return f[a], netlayout.Fake4.Contains(a) || netlayout.Fake6.Contains(a)
}

// A SYN to a fake address carries its name to the handler; one to a fake
// address that no name holds is refused without the handler, and says why.
func TestFakeAddresses(t *testing.T) {
	type seen struct {
		dst  netip.AddrPort
		host string
	}
	flows := make(chan seen, 8)
	h := handlerFunc(func(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
		flows <- seen{dst, host}
		if c, err := accept(); err == nil {
			c.Close()
		}
	})
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	_, app, _ := startStackOpts(t, h, Options{Log: log, Hosts: fakeHosts{
		netip.MustParseAddr("198.18.0.3"):             "mail.corp.example",
		netip.MustParseAddr("fd53:6875:6e74:fa6e::3"): "mail.corp.example",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct{ dst, host string }{
		{"198.18.0.3:993", "mail.corp.example"},
		{"[fd53:6875:6e74:fa6e::3]:993", "mail.corp.example"},
		{"10.1.2.3:993", ""},
	} {
		dst := netip.MustParseAddrPort(tt.dst)
		c, err := app.Dial(ctx, dst)
		if err != nil {
			t.Fatalf("dial %v: %v", dst, err)
		}
		c.Close()
		if f := <-flows; f.dst != dst || f.host != tt.host {
			t.Errorf("handler saw %v host %q, want %v host %q", f.dst, f.host, dst, tt.host)
		}
	}
	for _, dst := range []string{"198.18.0.9:993", "[fd53:6875:6e74:fa6e::9]:443"} {
		_, err := app.Dial(ctx, netip.MustParseAddrPort(dst))
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("dial %s = %v, want connection refused", dst, err)
		}
	}
	select {
	case f := <-flows:
		t.Errorf("the handler saw a flow to %v (host %q), an address no name holds", f.dst, f.host)
	default:
	}
	var debug, warn int
	for _, e := range hook.AllEntries() {
		if !strings.Contains(e.Message, "is not assigned to a name: the application cached an answer from before the table was reset") {
			continue
		}
		switch e.Level {
		case logrus.DebugLevel:
			debug++
		case logrus.WarnLevel:
			warn++
		}
	}
	if debug != 2 || warn < 1 || warn > 2 {
		t.Errorf("%d debug and %d warning lines about unassigned fake addresses, want 2, and 1 warning (2 if the two were further apart than its interval)", debug, warn)
	}
}
