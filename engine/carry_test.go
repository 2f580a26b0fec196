package engine_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/platform"
)

// A profile carries only its allowed users' flows: by default those of
// the user the configuration is read for (alice, uid 1000). Another
// user's flow, and one whose user cannot be found, get a refused
// connection and never reach the SSH server; allowed_users widens it,
// and a direct flow is never looked at.
func TestEngineCarriesOnlyAllowedUsers(t *testing.T) {
	w := newWorld(t)
	hook := test.NewLocal(w.log)
	cfg, err := w.parseProfiles(w.profile("shared", w.srv.Port())+"    allowed_users: [1001]\n", `rules:
  - destinations: [10.1.0.0/24]
    action: tunnel
    profile: gw
  - destinations: [10.2.0.0/24]
    action: tunnel
    profile: shared
  - destinations: [10.3.0.0/24]
    action: direct
`)
	if err != nil {
		t.Fatal(err)
	}
	w.start(cfg)
	alice, bob := &platform.Owner{UID: 1000, Exe: "/usr/bin/curl"}, &platform.Owner{UID: 1001, Exe: "/usr/bin/wget"}

	w.owners.SetAny(alice)
	roundTrip(t, mustDial(t, w, "10.1.0.5:80"), 1000)
	w.owners.SetAny(bob)
	refused(t, w, "10.1.0.6:80")
	w.owners.SetAny(nil) // the socket's owner cannot be found
	refused(t, w, "10.1.0.7:80")
	w.owners.SetAny(bob)
	roundTrip(t, mustDial(t, w, "10.2.0.5:80"), 1000) // shared: allowed_users [1001]
	w.owners.SetAny(alice)
	refused(t, w, "10.2.0.6:80")
	w.owners.SetAny(nil)
	roundTrip(t, mustDial(t, w, "10.3.0.5:80"), 1000) // direct

	got := w.forwarded()
	for _, addr := range []string{"10.1.0.6:80", "10.1.0.7:80", "10.2.0.6:80"} {
		if slices.Contains(got, addr) {
			t.Errorf("the SSH server forwarded %s, a flow that was refused (forwarded %v)", addr, got)
		}
	}
	for _, addr := range []string{"10.1.0.5:80", "10.2.0.5:80"} {
		if !slices.Contains(got, addr) {
			t.Errorf("the SSH server did not forward %s (forwarded %v)", addr, got)
		}
	}
	var warned []string
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "allowed_users") {
			warned = append(warned, e.Message)
			if e.Data["dst"] == "10.1.0.6:80" && (e.Data["uid"] != uint32(1001) || e.Data["app"] != "/usr/bin/wget" || e.Data["profile"] != "gw") {
				t.Errorf("refusal logged with %v: want uid, application and profile", e.Data)
			}
		}
	}
	if len(warned) != 3 || !strings.Contains(warned[0], "uid 1001's") || !strings.Contains(warned[1], "cannot be found") || !strings.Contains(warned[2], "uid 1000's") {
		t.Errorf("refusals logged: %q", warned)
	}
}
