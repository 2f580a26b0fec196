package console

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

// Whatever the Host header, a console on 127.0.0.1:9560 lets in only
// that address or localhost, at its port.
func FuzzHostAllowed(f *testing.F) {
	for _, s := range []string{"127.0.0.1:9560", "localhost:9560", "[::1]:9560", "evil.example:9560", "127.0.0.1", "[::ffff:127.0.0.1]:9560", "%00:9560", "[127.0.0.1%eth0]:9560"} {
		f.Add(s)
	}
	c := &Console{o: Options{Listen: netip.MustParseAddrPort("127.0.0.1:9560")}}
	f.Fuzz(func(t *testing.T, host string) {
		if !c.hostAllowed(host) {
			return
		}
		name, port, err := net.SplitHostPort(host)
		if err != nil || port != "9560" {
			t.Fatalf("%q allowed", host)
		}
		name = strings.ToLower(strings.Trim(name, "[]"))
		if a, err := netip.ParseAddr(name); name != "localhost" && (err != nil || a.Unmap() != netip.MustParseAddr("127.0.0.1")) {
			t.Fatalf("%q allowed", host)
		}
	})
}
