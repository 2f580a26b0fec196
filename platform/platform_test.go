package platform

import (
	"net/netip"
	"testing"
)

func TestIPNet(t *testing.T) {
	for _, s := range []string{"10.1.0.0/24", "0.0.0.0/0", "fd00::/64", "::/0", "10.1.2.3/32"} {
		p := netip.MustParsePrefix(s)
		if got := ipNet(p).String(); got != s {
			t.Errorf("ipNet(%s) = %s", s, got)
		}
	}
}
