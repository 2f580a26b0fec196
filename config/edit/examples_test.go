package edit

import (
	"io/fs"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/shunt-dev/shunt/config"
)

// machine is a machine of one user, alice, with no files: the examples
// read the same wherever the test runs.
func machine() config.Machine {
	alice := &user.User{Username: "alice", Uid: "1000", Gid: "1000", HomeDir: "/home/alice"}
	return config.Machine{
		Getenv: func(k string) string {
			return map[string]string{"HOME": alice.HomeDir, "USER": alice.Username}[k]
		},
		Geteuid:     func() int { return 1000 },
		CurrentUser: func() (*user.User, error) { return alice, nil },
		LookupUser: func(name string) (*user.User, error) {
			if name == alice.Username {
				return alice, nil
			}
			return nil, user.UnknownUserError(name)
		},
		ReadFile: func(name string) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		Stat: func(name string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
}

func parseConfig(t *testing.T, path string, data []byte) *config.Config {
	t.Helper()
	c, err := config.ParseWith(path, data, config.Options{Machine: machine(), SSHConfigFiles: []string{}})
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, data)
	}
	return c
}

// sameRules compares rules by what they say, not where they were written.
var sameRules = cmp.Options{
	cmpopts.IgnoreFields(config.Rule{}, "Line", "File"),
	cmpopts.IgnoreUnexported(config.Rule{}, config.Destination{}, config.Port{}, config.Source{}, config.UserRef{}),
	cmpopts.EquateEmpty(),
	cmpopts.EquateComparable(netip.Prefix{}),
}

// TestExamples edits the repository's example configurations: their rules
// reversed, a rule added and one deleted read back with config.Parse as
// that, and every line outside the rules is kept.
func TestExamples(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	files = append(files, "../../dist/package/shunt.yaml")
	more, _ := filepath.Glob("../testdata/*.yaml")
	files = append(files, more...)
	tested := 0
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), "\nrules:") {
			continue // not a shunt configuration (the gateway's)
		}
		tested++
		t.Run(filepath.Base(path), func(t *testing.T) {
			orig := parseConfig(t, path, data)
			d, err := Parse(path, data)
			if err != nil {
				t.Fatal(err)
			}
			n, err := d.Len("rules")
			if err != nil || n != len(orig.Rules) {
				t.Fatalf("Len: %d, %v; config.Parse has %d rules", n, err, len(orig.Rules))
			}
			var items []Item
			for i := n - 1; i >= 0; i-- {
				items = append(items, Keep(i))
			}
			items = append(items, New(web))
			if err := d.SetSequence("rules", items); err != nil {
				t.Fatal(err)
			}
			out := d.Bytes()
			got := parseConfig(t, path, out)
			want := slices.Clone(orig.Rules)
			slices.Reverse(want)
			extra := parseConfig(t, "web.yaml", []byte("profiles: [{name: office, host: gw}]\nrules:\n"+indented(webText, 2)))
			want = append(want, extra.Rules...)
			if diff := cmp.Diff(want, got.Rules, sameRules); diff != "" {
				t.Errorf("rules after the edit (-want +got):\n%s", diff)
			}
			if len(got.Profiles) != len(orig.Profiles) {
				t.Errorf("profiles changed: %d, were %d", len(got.Profiles), len(orig.Profiles))
			}
			for i := range min(len(got.Profiles), len(orig.Profiles)) {
				g, o := got.Profiles[i], orig.Profiles[i]
				if g.Name != o.Name || !slices.Equal(g.Host, o.Host) || g.User != o.User || g.Port != o.Port {
					t.Errorf("profile %d changed: %+v, was %+v", i, g, o)
				}
			}
			// Every line of the original is still there: the edit added
			// one rule and moved the others.
			outLines := strings.Split(string(out), "\n")
			for i, l := range strings.Split(string(data), "\n") {
				if !slices.Contains(outLines, l) {
					t.Errorf("line %d %q is gone", i+1, l)
				}
			}
			// And back: the original order, without the new rule, is the
			// original file.
			d2, err := Parse(path, out)
			if err != nil {
				t.Fatal(err)
			}
			items = items[:0]
			for i := n - 1; i >= 0; i-- {
				items = append(items, Keep(i))
			}
			if err := d2.SetSequence("rules", items); err != nil {
				t.Fatal(err)
			}
			if back := string(d2.Bytes()); back != string(data) {
				t.Errorf("reversed twice, the file is\n%s\nnot\n%s", back, data)
			}
		})
	}
	if tested < 3 {
		t.Errorf("tested %d example files, want at least 3", tested)
	}
}
