package engine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/engine/enginetest"
	"github.com/shunt-dev/shunt/platform/platformtest"
	"github.com/shunt-dev/shunt/tun"
)

// Start refuses a device name the OS does not take (tun.CheckName), at the
// configuration's file and line, before it changes anything: no owners
// look-up, no name resolved, no device, no routes.
func TestStartRefusesBadTUNName(t *testing.T) {
	cfg, err := parse(t, "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: tunnel\n    profile: p\n    destinations: [gw.example]\ntun:\n  name: bad/name\n")
	if err != nil {
		t.Fatal(err)
	}
	capture := &enginetest.Capture{}
	owners := &platformtest.Owners{}
	resolved := 0
	log, _ := test.NewNullLogger()
	e, err := engine.New(cfg, engine.Deps{
		Capture: capture,
		Owners:  owners.Open,
		Resolve: func([]string, func()) (engine.Resolver, error) {
			resolved++
			return nil, errors.New("no resolving in this test")
		},
		Getenv: func(string) string { return "" },
		Log:    log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	err = e.Start(context.Background())
	if want := fmt.Sprintf("shunt.yaml:9: tun.name %v", tun.CheckName("bad/name")); err == nil || err.Error() != want {
		t.Fatalf("Start = %v\nwant %s", err, want)
	}
	if capture.Ups() != 0 || owners.Opens() != 0 || resolved != 0 || e.DeviceName() != "" {
		t.Errorf("Start changed things first: %d capture ups, %d owner look-ups, %d resolves, device %q",
			capture.Ups(), owners.Opens(), resolved, e.DeviceName())
	}
}
