package engine

import (
	"testing"

	"github.com/shunt-dev/shunt/state"
)

// A tunnelled flow is shown with its profile's server; a host-from-
// application flow keeps the server the router gave it; a profile that a
// reload changed (its old connections retired, still carrying flows) has
// flows on two servers, so none is named.
func TestFillServers(t *testing.T) {
	st := state.Status{
		Profiles: []state.Profile{
			{Name: "gw", State: state.Connected, Server: "gw.example:22"},
			{Name: "gw", Via: "db1", State: state.Connected, Server: "db1:22"},
			{Name: "moved", State: state.Connected, Server: "new.example:22"},
			{Name: "moved", Retired: true, State: state.Connected, Server: "old.example:22"},
			{Name: "down", State: state.Backoff, Server: "down.example:22"},
		},
		Flows: []state.Flow{
			{ID: 1, Profile: "gw"},
			{ID: 2, Profile: "gw", Server: "db1"},
			{ID: 3, Profile: "moved"},
			{ID: 4, Profile: "down"},
			{ID: 5},
		},
	}
	fillServers(&st)
	want := []string{"gw.example:22", "db1", "", "", ""}
	for i, f := range st.Flows {
		if f.Server != want[i] {
			t.Errorf("flow %d: server %q, want %q", f.ID, f.Server, want[i])
		}
	}
}
