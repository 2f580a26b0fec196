package platformtest

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/shunt-dev/shunt/platform"
)

func TestDNSRecords(t *testing.T) {
	d := &DNS{Up: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53")}}
	ns := []netip.Addr{netip.MustParseAddr("169.254.83.53")}
	if err := d.Set(platform.DNSConfig{Nameservers: ns, Domains: []string{"corp.example"}, Device: "utun4"}); err != nil {
		t.Fatal(err)
	}
	if c := d.Current(); c == nil || c.Device != "utun4" {
		t.Fatalf("current %+v", c)
	}
	d.SetErr = errors.New("refused")
	if err := d.Set(platform.DNSConfig{Nameservers: ns}); err == nil {
		t.Fatal("SetErr did not fail Set")
	}
	d.Close()
	want := []string{
		"set nameservers 169.254.83.53 domains corp.example device utun4",
		"set nameservers 169.254.83.53 domains all device ",
		"close",
	}
	if got := d.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
	if d.Current() != nil || d.Mode() != platform.DNSModeFile || len(d.Upstreams()) != 1 {
		t.Errorf("after close: %+v %s %v", d.Current(), d.Mode(), d.Upstreams())
	}
}
