package engine

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/platform/platformtest"
	"github.com/shunt-dev/shunt/router"
)

// The router gets platform's owners as they are, an owner without uid
// (Windows) included, and the flow's context reaches platform.
func TestPlatformOwners(t *testing.T) {
	ap := netip.MustParseAddrPort
	src, dst, win := ap("198.18.0.1:40000"), ap("10.1.2.3:25"), ap("198.18.0.1:40001")
	fake := &platformtest.Owners{}
	fake.Set(src, dst, platform.Owner{UID: 1000, PID: 42, Exe: "/usr/bin/curl", Name: "curl"})
	fake.Set(win, dst, platform.Owner{NoUID: true, User: "S-1-5-21-1-2-3-1001", PID: 7, Exe: `C:\curl.exe`, Name: "curl.exe"})
	var o owners
	if _, err := o.Lookup(t.Context(), src, dst); !errors.Is(err, errNoOwnerLookup) {
		t.Errorf("before Start: %v", err)
	}
	o.set(platformOwners{fake})
	if got, err := o.Lookup(t.Context(), src, dst); err != nil || got != (router.Owner{UID: 1000, Exe: "/usr/bin/curl", Name: "curl"}) {
		t.Errorf("Lookup = %+v, %v", got, err)
	}
	if got, err := o.Lookup(t.Context(), win, dst); err != nil || got != (router.Owner{NoUID: true, Exe: `C:\curl.exe`, Name: "curl.exe"}) {
		t.Errorf("Lookup of an owner without uid = %+v, %v", got, err)
	}
	if uid, err := o.LookupUID(t.Context(), src, dst); err != nil || uid != 1000 {
		t.Errorf("LookupUID = %d, %v", uid, err)
	}
	if _, err := o.LookupUID(t.Context(), win, dst); !errors.Is(err, platform.ErrNoUID) {
		t.Errorf("LookupUID of an owner without uid: %v", err)
	}
	if _, err := o.Lookup(t.Context(), dst, src); !errors.Is(err, platform.ErrNoSocket) {
		t.Errorf("unknown flow: %v", err)
	}
	if n := len(fake.Calls()); n != 5 {
		t.Errorf("%d lookups reached platform, want 5", n)
	}
}
