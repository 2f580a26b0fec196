package broker

import (
	"context"
	"net"
	"testing"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// SetProxyRules replaces the proxy rules the broker was made with: the
// next connection follows the new ones.
func TestSetProxyRules(t *testing.T) {
	// A proxy nobody listens on: a connection through it fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "socks5://" + ln.Addr().String()
	ln.Close()
	f := newFixture(t)
	b := f.broker(t, func(_ *Profile, o *Options) {
		o.ProxyRules = []ProxyRule{{Proxy: mustProxy(t, dead).Proxy}}
	})
	if _, how := b.route(&f.profile, "127.0.0.1"); how != "via "+dead+" (proxy rule 1)" {
		t.Fatalf("before: route %q", how)
	}
	b.SetProxyRules([]ProxyRule{{Hosts: []string{"*.corp.example"}, Proxy: mustProxy(t, dead).Proxy}})
	if _, how := b.route(&f.profile, "127.0.0.1"); how != "direct" {
		t.Fatalf("after: route %q, want direct", how)
	}
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatalf("a connection after SetProxyRules still went through the old rules' proxy: %v", err)
	}
	defer c.Close()
	roundTrip(t, c, "through the new rules")
}
