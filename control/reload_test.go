package control_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/control"
)

// POST /v1/reload?reset_removed=1 reaches the backend as ResetRemoved; a
// value that is not a yes or a no is refused without asking it.
func TestReloadResetRemoved(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	if err := f.c.ReloadWith(ctx, control.ReloadOptions{ResetRemoved: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	code, _, body := raw(t, f.socket, "POST", "/v1/reload?reset_removed=maybe", "")
	if code != 400 || !strings.Contains(string(body), `reset_removed=\"maybe\": use reset_removed=1 (or 0)`) {
		t.Errorf("reset_removed=maybe: %d %s", code, body)
	}
	if code, _, body := raw(t, f.socket, "POST", "/v1/reload?reset_removed=0", ""); code != 200 {
		t.Errorf("reset_removed=0: %d %s", code, body)
	}
	if got, want := f.b.Calls(), []string{"reload reset_removed", "reload", "reload"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}
