package gateway

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseEntry(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"10.0.0.0/8:22,80,443-445", "10.0.0.0/8:22,80,443-445"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.7:22", "192.0.2.7/32:22"},
		{"[2001:db8::/32]:443", "[2001:db8::/32]:443"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"[2001:db8::1]", "2001:db8::1/128"},
		{" 0.0.0.0/0:1-65535 ", "0.0.0.0/0:1-65535"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
	}
	for _, tt := range tests {
		e, err := ParseEntry(tt.in)
		if err != nil {
			t.Errorf("ParseEntry(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("ParseEntry(%q) = %s, want %s", tt.in, got, tt.want)
		}
		again, err := ParseEntry(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("round trip of %q: %v, %v", e, again, err)
		}
	}
}

func TestParseEntryErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "empty permit entry"},
		{"10.0.0.0/8:", "empty port list"},
		{"10.0.0.0/8:0", "ports are numbers from 1 to 65535"},
		{"10.0.0.0/8:65536", "ports are numbers from 1 to 65535"},
		{"10.0.0.0/8:22,,80", "extra comma"},
		{"10.0.0.0/8:445-443", "write 443-445"},
		{"10.0.0.0/8:http", `"http" is not a port`},
		{"10.1.2.3/8", "write 10.0.0.0/8"},
		{"10.0.0.0/33", "not a CIDR network"},
		{"example.com:22", "not an IP address"},
		{"[2001:db8::/32", "missing ]"},
		{"[2001:db8::/32]443", "expected :PORTS"},
		{":22", "no network before the ports"},
		{"fe80::1%eth0", "zone"},
	}
	for _, tt := range tests {
		_, err := ParseEntry(tt.in)
		if err == nil {
			t.Errorf("ParseEntry(%q) succeeded, want error with %q", tt.in, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseEntry(%q) = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestPermitAllows(t *testing.T) {
	p, err := ParsePermit([]string{"10.0.0.0/8:22,80,443-445", "192.0.2.7", "[2001:db8::/32]:443"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dst    string
		ok     bool
		reason string
	}{
		{"10.1.2.3:22", true, ""},
		{"10.1.2.3:444", true, ""},
		{"10.1.2.3:446", false, "port 446 is not permitted"},
		{"11.0.0.1:22", false, "in no permitted network"},
		{"192.0.2.7:1", true, ""},
		{"192.0.2.7:65535", true, ""},
		{"192.0.2.8:22", false, "in no permitted network"},
		{"[2001:db8::5]:443", true, ""},
		{"[2001:db8::5]:80", false, "port 80"},
		{"[2001:db9::5]:443", false, "in no permitted network"},
		{"[::ffff:10.0.0.1]:22", true, ""},
	}
	for _, tt := range tests {
		ap := netip.MustParseAddrPort(tt.dst)
		ok, reason := p.Check(ap.Addr(), ap.Port())
		if ok != tt.ok || !strings.Contains(reason, tt.reason) || (ok && reason != "") {
			t.Errorf("Check(%s) = %v, %q; want %v, %q", tt.dst, ok, reason, tt.ok, tt.reason)
		}
		if p.Allows(ap.Addr(), ap.Port()) != tt.ok {
			t.Errorf("Allows(%s) != %v", tt.dst, tt.ok)
		}
	}
}

func TestPermitEmpty(t *testing.T) {
	var p Permit
	ok, reason := p.Check(netip.MustParseAddr("10.0.0.1"), 22)
	if ok || !strings.Contains(reason, "permits no destinations") {
		t.Errorf("empty permit: %v, %q", ok, reason)
	}
	if ok, _ := p.Check(netip.Addr{}, 22); ok {
		t.Error("invalid address allowed")
	}
}

func TestParsePermitErrors(t *testing.T) {
	_, err := ParsePermit([]string{"10.0.0.0/8", "bad", "1.2.3.4:0"})
	if err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"1.2.3.4:0"`) {
		t.Errorf("ParsePermit: %v, want both bad entries named", err)
	}
}
