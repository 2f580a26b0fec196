package platform

import (
	"errors"
	"io"
	"net/netip"
	"runtime"
	"testing"

	"github.com/sirupsen/logrus"
)

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func TestOwnerString(t *testing.T) {
	if got := (Owner{UID: 1000, PID: 42, Exe: "/usr/bin/curl", Name: "curl"}).String(); got != "curl[42] uid 1000" {
		t.Errorf("got %q", got)
	}
	if got := (Owner{UID: 0}).String(); got != "uid 0" {
		t.Errorf("got %q", got)
	}
	if got := (Owner{NoUID: true, User: "S-1-5-21-1-2-3-1001", PID: 7, Name: "curl.exe"}).String(); got != "curl.exe[7] user S-1-5-21-1-2-3-1001" {
		t.Errorf("got %q", got)
	}
}

func TestFlowTuple(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, c := range []struct {
		src, dst, wantSrc, wantDst string
		ok                         bool
	}{
		{"198.18.0.1:40000", "10.1.2.3:25", "198.18.0.1:40000", "10.1.2.3:25", true},
		{"[::ffff:198.18.0.1]:40000", "[::ffff:10.1.2.3]:25", "198.18.0.1:40000", "10.1.2.3:25", true},
		{"[::ffff:198.18.0.1]:40000", "10.1.2.3:25", "198.18.0.1:40000", "10.1.2.3:25", true},
		{"[fd53:6875:6e74::1]:40000", "[fd00:1::5]:993", "[fd53:6875:6e74::1]:40000", "[fd00:1::5]:993", true},
		{"[fe80::1%eth0]:40000", "[fe80::2%eth0]:22", "[fe80::1]:40000", "[fe80::2]:22", true},
		{"198.18.0.1:40000", "[fd00:1::5]:993", "", "", false},
	} {
		src, dst, err := flowTuple(ap(c.src), ap(c.dst))
		if (err == nil) != c.ok {
			t.Errorf("%s -> %s: error %v, want ok=%v", c.src, c.dst, err, c.ok)
			continue
		}
		if c.ok && (src != ap(c.wantSrc) || dst != ap(c.wantDst)) {
			t.Errorf("%s -> %s: got %v -> %v", c.src, c.dst, src, dst)
		}
	}
	if _, _, err := flowTuple(netip.AddrPort{}, ap("10.1.2.3:25")); err == nil {
		t.Error("an invalid source passed")
	}
}

func TestNewOwners(t *testing.T) {
	l, err := NewOwners(quietLog())
	switch runtime.GOOS {
	case "linux", "darwin", "windows":
	default:
		if !errors.Is(err, ErrNotSupported) {
			t.Fatalf("on %s: %v, want ErrNotSupported", runtime.GOOS, err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
}
