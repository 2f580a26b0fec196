package broker

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// A profile without identity files uses the default keys of the user shunt
// acts for (Options.Home), not of whoever runs the process: under sudo
// that is the user who ran sudo, not root.
func TestDefaultKeysFromOptionsHome(t *testing.T) {
	f := newFixture(t)
	home := t.TempDir()
	if err := os.Mkdir(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.profile.IdentityFiles[0], filepath.Join(home, ".ssh", "id_ed25519")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir()) // an empty home: its keys must not be what logs in
	b := f.broker(t, func(p *Profile, o *Options) {
		p.IdentityFiles = nil
		o.Home = home
	})
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatalf("the default key in Options.Home was not used: %v", err)
	}
	roundTrip(t, c, "hello")
	c.Close()
}
