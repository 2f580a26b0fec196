package engine

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/platform"
)

func TestLocalAddrs(t *testing.T) {
	log, _ := test.NewNullLogger()
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("192.168.50.1").To4(), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
		&net.IPAddr{IP: net.ParseIP("2001:db8::7")},
	}
	var fail error
	l := &localAddrs{read: func() ([]net.Addr, error) { return addrs, fail }, log: log}
	tunAddr := platform.TUNAddrs()[0].Addr()
	check := func(when string, want map[string]bool) {
		t.Helper()
		for a, local := range want {
			if got := l.IsLocal(netip.MustParseAddr(a)); got != local {
				t.Errorf("%s: IsLocal(%s) = %v, want %v", when, a, got, local)
			}
		}
	}
	check("before the first refresh", map[string]bool{"127.0.0.1": true, "::1": true, tunAddr.String(): true, "192.168.50.1": false})
	l.refresh()
	check("after it", map[string]bool{
		"192.168.50.1": true, "::ffff:192.168.50.1": true, "fe80::1%eth0": true, "2001:db8::7": true, tunAddr.String(): true,
		"127.0.0.2": true, "192.168.50.9": false, "10.1.0.1": false,
	})
	addrs = addrs[:1]
	addrs[0] = &net.IPNet{IP: net.ParseIP("192.168.51.1").To4(), Mask: net.CIDRMask(24, 32)}
	l.refresh()
	check("after a change", map[string]bool{"192.168.50.1": false, "192.168.51.1": true})
	fail = errors.New("netlink: no")
	l.refresh()
	check("after a failed refresh", map[string]bool{"192.168.51.1": true})
}

func BenchmarkIsLocal(b *testing.B) {
	log, _ := test.NewNullLogger()
	l := newLocalAddrs(log)
	l.refresh()
	a := netip.MustParseAddr("192.168.77.9")
	b.ReportAllocs()
	for b.Loop() {
		l.IsLocal(a)
	}
}
