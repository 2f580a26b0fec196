package broker

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// profileNames is the broker's status as "name" or "name (retired)", in order.
func profileNames(b *Broker) []string {
	var out []string
	for _, p := range b.Status() {
		s := p.Name
		if p.Retired {
			s += " (retired)"
		}
		out = append(out, s)
	}
	return out
}

// A reload's profiles: a new one is usable at once, a changed one's new
// flows get a new pool (on the new server), a removed one takes no new
// flows, and an unchanged one keeps its connection. Flows running on the
// replaced and removed pools go on; each retired connection closes once
// its last flow ends, though idle_timeout would keep it, and its pool then
// leaves Status.
func TestSetProfilesSwapsWhileFlowsRun(t *testing.T) {
	srvA, pa, _ := keyedServer(t)
	srvB, pb, _ := keyedServer(t)
	echo := brokertest.Echo(t)
	pa.IdleTimeout, pb.IdleTimeout = time.Hour, time.Hour
	a, old, keep := pa, pa, pa
	a.Name, old.Name, keep.Name = "a", "old", "keep"
	b := newBroker(t, Options{}, a, old, keep)

	onA := mustDial(t, b, "a", echo)
	onOld := mustDial(t, b, "old", echo)
	onKeep := mustDial(t, b, "keep", echo)
	if n := srvA.Logins.Load(); n != 3 {
		t.Fatalf("%d logins on server A, want 3", n)
	}

	a2, added := pb, pb
	a2.Name, added.Name = "a", "new" // a moves to server B
	if err := b.SetProfiles([]Profile{a2, keep, added}, false); err != nil {
		t.Fatal(err)
	}
	if got, want := profileNames(b), []string{"a", "keep", "new", "a (retired)", "old (retired)"}; !slices.Equal(got, want) {
		t.Errorf("status %v, want %v", got, want)
	}
	// Running flows go on, on their old connections.
	roundTrip(t, onA, "still a")
	roundTrip(t, onOld, "still old")
	roundTrip(t, onKeep, "still keep")

	if _, err := b.Dial(context.Background(), "old", echo); err == nil || !strings.Contains(err.Error(), `no connection profile "old"`) {
		t.Errorf("dial through the removed profile: %v", err)
	}
	mustDial(t, b, "a", echo)
	mustDial(t, b, "new", echo)
	mustDial(t, b, "keep", echo)
	if n := srvB.Logins.Load(); n != 2 {
		t.Errorf("%d logins on server B, want 2 (the changed a's and new's)", n)
	}
	if n := srvA.Logins.Load(); n != 3 {
		t.Errorf("%d logins on server A, want still 3 (keep kept its connection)", n)
	}

	// The retired connections close as their last flows end.
	onA.Close()
	waitUntil(t, func() bool { return !slices.Contains(profileNames(b), "a (retired)") })
	if got, want := profileNames(b), []string{"a", "keep", "new", "old (retired)"}; !slices.Equal(got, want) {
		t.Errorf("status %v, want %v", got, want)
	}
	roundTrip(t, onOld, "old goes on")
	onOld.Close()
	waitUntil(t, func() bool { return len(b.Status()) == 3 })
	for _, c := range b.Connections() {
		if c.Profile == "keep" && !c.Up {
			t.Error("the unchanged profile's connection closed")
		}
	}
	waitUntil(t, func() bool { return srvA.OpenChannels.Load() == 2 }) // keep's two
}

// With resetRemoved, the flows of replaced and removed profiles are reset
// at once (their reads fail with ErrConnectionLost); an unchanged
// profile's flows are left alone.
func TestSetProfilesResetRemoved(t *testing.T) {
	_, p, _ := keyedServer(t)
	echo := brokertest.Echo(t)
	gone, keep := p, p
	gone.Name, keep.Name = "gone", "keep"
	b := newBroker(t, Options{}, gone, keep)
	onGone := mustDial(t, b, "gone", echo)
	onKeep := mustDial(t, b, "keep", echo)
	if err := b.SetProfiles([]Profile{keep}, true); err != nil {
		t.Fatal(err)
	}
	onGone.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(onGone); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("read on the removed profile's flow: %v, want ErrConnectionLost", err)
	}
	roundTrip(t, onKeep, "kept")
	onGone.Close()
	waitUntil(t, func() bool { return slices.Equal(profileNames(b), []string{"keep"}) })
}

// Profiles that do not check are refused as a whole: nothing changes.
func TestSetProfilesRefusedChangesNothing(t *testing.T) {
	_, p, _ := keyedServer(t)
	echo := brokertest.Echo(t)
	b := newBroker(t, Options{}, p)
	c := mustDial(t, b, "gw", echo)
	added := p
	added.Name = "new"
	jumpy := p
	jumpy.Name, jumpy.Jump = "jumpy", "nowhere"
	for _, tt := range []struct {
		profiles []Profile
		want     string
	}{
		{[]Profile{added, added}, `profile "new" is defined twice`},
		{[]Profile{added, jumpy}, `profile "jumpy" jumps through unknown profile "nowhere"`},
	} {
		if err := b.SetProfiles(tt.profiles, true); err == nil || err.Error() != tt.want {
			t.Errorf("SetProfiles: %v, want %q", err, tt.want)
		}
	}
	if _, err := b.Dial(context.Background(), "new", echo); err == nil {
		t.Error("a refused profile can be dialled")
	}
	roundTrip(t, c, "still here")
	mustDial(t, b, "gw", echo)
	if got := profileNames(b); !slices.Equal(got, []string{"gw"}) {
		t.Errorf("status %v", got)
	}
}

// A profile whose jump profile changed is changed too: its new flows go
// through the new jump, while its running flow keeps the old chain.
func TestSetProfilesJumpChanged(t *testing.T) {
	srvA, pa, _ := keyedServer(t)
	srvB, pb, _ := keyedServer(t)
	echo := brokertest.Echo(t)
	jump, inner := pa, pa
	jump.Name, inner.Name, inner.Jump = "jump", "inner", "jump"
	b := newBroker(t, Options{}, jump, inner)
	running := mustDial(t, b, "inner", echo)
	jump2 := pb
	jump2.Name = "jump"
	if err := b.SetProfiles([]Profile{jump2, inner}, false); err != nil {
		t.Fatal(err)
	}
	if got, want := profileNames(b), []string{"jump", "inner", "jump (retired)", "inner (retired)"}; !slices.Equal(got, want) {
		t.Errorf("status %v, want %v", got, want)
	}
	logins := srvA.Logins.Load()
	mustDial(t, b, "inner", echo)
	if srvB.Logins.Load() != 1 || srvA.Logins.Load() != logins+1 {
		t.Errorf("logins A %d (were %d), B %d: want inner's new connection through the new jump (B), to A", srvA.Logins.Load(), logins, srvB.Logins.Load())
	}
	roundTrip(t, running, "old chain")
	running.Close()
	waitUntil(t, func() bool { return len(b.Status()) == 2 })
}
