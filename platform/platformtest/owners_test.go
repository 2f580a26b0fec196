package platformtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/shunt-dev/shunt/platform"
)

func TestOwners(t *testing.T) {
	ap := netip.MustParseAddrPort
	a, b, c := ap("198.18.0.1:40000"), ap("198.18.0.1:40001"), ap("10.1.2.3:25")
	var o Owners
	l, err := o.Open(nil)
	if err != nil || l != platform.Owners(&o) {
		t.Fatalf("Open: %v, %v", l, err)
	}
	ctx := t.Context()
	if _, err := l.Lookup(ctx, a, c); !errors.Is(err, platform.ErrNoSocket) {
		t.Errorf("empty table: %v, want ErrNoSocket", err)
	}
	curl := platform.Owner{UID: 1000, PID: 42, Exe: "/usr/bin/curl", Name: "curl"}
	o.Set(a, c, curl)
	boom := errors.New("boom")
	o.Fail(b, c, boom)
	if got, err := l.Lookup(ctx, a, c); err != nil || got != curl {
		t.Errorf("Lookup = %+v, %v", got, err)
	}
	if uid, err := l.LookupUID(ctx, a, c); err != nil || uid != 1000 {
		t.Errorf("LookupUID = %d, %v", uid, err)
	}
	if _, err := l.Lookup(ctx, b, c); err != boom {
		t.Errorf("failing flow: %v", err)
	}
	o.SetAny(&platform.Owner{UID: 7})
	if got, err := l.Lookup(ctx, c, a); err != nil || got.UID != 7 {
		t.Errorf("any flow: %+v, %v", got, err)
	}
	o.SetAny(&platform.Owner{NoUID: true, User: "S-1-5-21-1-2-3-1001"})
	if _, err := l.LookupUID(ctx, c, a); !errors.Is(err, platform.ErrNoUID) {
		t.Errorf("LookupUID of an owner without uid: %v", err)
	}
	o.FailAll(boom)
	if _, err := l.Lookup(ctx, a, c); err != boom {
		t.Errorf("FailAll: %v", err)
	}
	o.FailAll(nil)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Lookup(cancelled, a, c); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Lookup(ctx, a, c); err == nil {
		t.Error("a lookup after Close succeeded")
	}
	if got := fmt.Sprint(o.Calls()); got != "[Lookup 198.18.0.1:40000 -> 10.1.2.3:25 Lookup 198.18.0.1:40000 -> 10.1.2.3:25 LookupUID 198.18.0.1:40000 -> 10.1.2.3:25 Lookup 198.18.0.1:40001 -> 10.1.2.3:25 Lookup 10.1.2.3:25 -> 198.18.0.1:40000 LookupUID 10.1.2.3:25 -> 198.18.0.1:40000 Lookup 198.18.0.1:40000 -> 10.1.2.3:25 Lookup 198.18.0.1:40000 -> 10.1.2.3:25 Lookup 198.18.0.1:40000 -> 10.1.2.3:25]" {
		t.Errorf("calls %s", got)
	}
	if o.Opens() != 1 || o.Closes() != 1 {
		t.Errorf("%d opens, %d closes", o.Opens(), o.Closes())
	}
	o.OpenErr = boom
	if _, err := o.Open(nil); err != boom {
		t.Errorf("Open with OpenErr: %v", err)
	}
}
