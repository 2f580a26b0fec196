package netlayout

import (
	"net/netip"
	"testing"
)

// The layout's promise: no fake range overlaps shunt's own addresses, every
// own address lies in an Own prefix, and the TUN's are single addresses.
func TestLayoutDoesNotOverlap(t *testing.T) {
	for _, f := range DefaultFakeRanges() {
		for _, o := range Own() {
			if f.Overlaps(o) {
				t.Errorf("fake range %v overlaps shunt's own %v", f, o)
			}
		}
	}
	own := append(DNSAddrs(), TUN4, TUN6)
	for _, a := range own {
		in := false
		for _, o := range Own() {
			in = in || o.Contains(a)
		}
		if !in {
			t.Errorf("%v is in no Own prefix", a)
		}
		for _, f := range DefaultFakeRanges() {
			if f.Contains(a) {
				t.Errorf("%v lies in fake range %v", a, f)
			}
		}
	}
	for _, p := range TUNAddrs() {
		if p.Bits() != p.Addr().BitLen() {
			t.Errorf("%v would add a connected route; use a single address", p)
		}
	}
	for _, d := range DNSAddrs() {
		if d == TUN4 || d == TUN6 {
			t.Errorf("DNS address %v is a TUN address: the kernel would answer it, not shunt", d)
		}
	}
	if !netip.MustParsePrefix("169.254.0.0/16").Contains(TUN4) {
		t.Error("TUN4 should be link-local")
	}
}
