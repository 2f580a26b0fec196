package starter

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

func TestStarterRenderParses(t *testing.T) {
	for _, o := range []Options{
		{User: "alice", Host: "gw.example.com", Capture: []string{"10.1.0.0/16"}},
		{Profile: "office", User: "alice", Host: "gw.example.com", Port: 2222,
			Identity: "/tmp/id", KnownHosts: "/tmp/kh",
			Capture: []string{"10.1.0.0/16", "192.168.5.0/24"}, Ports: []string{"25", "143", "993-995"}},
	} {
		data, err := Render(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse("starter.yaml", data); err != nil {
			t.Fatalf("rendered config does not parse: %v\n%s", err, data)
		}
	}
}

func TestStarterWriteRefusesOverwrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "shunt.yaml")
	if err := Write(p, []byte("a"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("b"), 0o600, false); !errors.Is(err, ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if err := Write(p, []byte("c"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(got) != "c" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %q mode %v", got, fi.Mode())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
