package config

import (
	"io/fs"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// allowed_users: whose flows ride on a profile, by default and as written.
func TestAllowedUsers(t *testing.T) {
	const rules = "rules:\n  - action: tunnel\n    profile: p\n"
	tests := []struct {
		name    string
		sudo    string // SUDO_USER, with euid 0
		daemon  bool
		users   string // the allowed_users line, or ""
		want    []uint32
		wantAny bool
		warning string
		err     string
	}{
		{name: "default: the user running shunt", want: []uint32{1000}},
		{name: "default under sudo: the user who ran sudo", sudo: "bob", want: []uint32{1001}},
		{name: "default of shunt daemon: its own uid, even under sudo", sudo: "bob", daemon: true, want: []uint32{0}},
		{name: "names and uids", users: "    allowed_users: [bob, 1002, root]\n", want: []uint32{1001, 1002, 0}},
		{name: "any", users: "    allowed_users: any\n", wantAny: true,
			warning: `x.yaml:4: profile "p" serves every user: with allowed_users: any, the flows of every local user (and of programs that cannot be traced to one) ride on its SSH login as alice`},
		{name: "star", users: "    allowed_users: [\"*\"]\n", wantAny: true, warning: `x.yaml:4: profile "p" serves every user`},
		{name: "unknown user", users: "    allowed_users:\n      - mallory\n",
			err: `x.yaml:5: profile "p": allowed_users: user "mallory" is unknown on this machine: write a user name or a uid, or any for every user`},
		{name: "any and more", users: "    allowed_users: [any, bob]\n",
			err: `x.yaml:4: profile "p": allowed_users has any and more`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			if tt.sudo != "" {
				e.euid = 0
				e.env = map[string]string{"SUDO_USER": tt.sudo, "HOME": "/root"}
				e.file("/home/"+tt.sudo+"/.ssh/known_hosts", "", 0o600)
			}
			opts := e.opts()
			opts.Daemon = tt.daemon
			c, err := ParseWith("x.yaml", []byte("profiles:\n  - name: p\n    host: gw\n"+tt.users+rules), opts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			uids, anyUser := c.Profiles[0].AllowedUIDs()
			if !slices.Equal(uids, tt.want) || anyUser != tt.wantAny {
				t.Errorf("allowed uids %v, any %v; want %v, %v", uids, anyUser, tt.want, tt.wantAny)
			}
			var warned []string
			for _, p := range c.Problems {
				warned = append(warned, p.String())
			}
			found := slices.ContainsFunc(warned, func(s string) bool { return strings.HasPrefix(s, tt.warning) })
			if tt.warning != "" && !found {
				t.Errorf("problems %q, want one starting %q", warned, tt.warning)
			}
			if tt.warning == "" && slices.ContainsFunc(warned, func(s string) bool { return strings.Contains(s, "serves every user") }) {
				t.Errorf("problems %q: no profile serves every user", warned)
			}
		})
	}
}

func uid(n uint32) *uint32 { return &n }

// What each system can trace a flow to: Linux and macOS its uid and
// application, Windows its application only (its users are SIDs), other
// systems neither. A configuration that asks for more is refused at its
// line, and on Windows a tunnel profile must say allowed_users: any.
func TestFlowOwnersPerSystem(t *testing.T) {
	const profile = "profiles:\n  - name: p\n    host: gw\n"
	const anyUser = "    allowed_users: any\n"
	for _, tc := range []struct {
		goos, yaml, err string
	}{
		{"linux", profile + "rules:\n  - users: [bob]\n    action: tunnel\n    profile: p\n", ""},
		{"darwin", profile + "rules:\n  - users: [bob]\n    applications: [curl]\n    action: tunnel\n    profile: p\n", ""},
		{"windows", profile + anyUser + "rules:\n  - applications: [curl.exe]\n    action: tunnel\n    profile: p\n", ""},
		{"windows", profile + anyUser + "rules:\n  - users: [bob]\n    action: tunnel\n    profile: p\n",
			`x.yaml:6: rule #1: users cannot be matched on windows yet (a flow's user is not known by uid there): remove them from the rule, or match by applications`},
		{"windows", profile + "rules:\n  - action: tunnel\n    profile: p\n",
			`x.yaml:2: profile "p": flows cannot be traced to their users' uids on windows yet, so shunt cannot check whose flows ride on the profile: write allowed_users: any`},
		{"freebsd", profile + anyUser + "rules:\n  - applications: [curl]\n    action: tunnel\n    profile: p\n",
			`x.yaml:6: rule #1: applications cannot be looked up on freebsd yet: remove them from the rule`},
	} {
		t.Run(tc.goos, func(t *testing.T) {
			e := newTestEnv(t)
			e.goos = tc.goos
			_, err := ParseWith("x.yaml", []byte(tc.yaml), e.opts())
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

// Files that other users can change are refused, as OpenSSH refuses them:
// by their mode, their owner, or a directory above them.
func TestFileModesRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	const profile = "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id]\nrules:\n  - action: tunnel\n    profile: p\n"
	tests := []struct {
		name  string
		setup func(e *testEnv)
		want  string // a part of the error; "" none
	}{
		{name: "all private", setup: func(e *testEnv) {}},
		{name: "a sticky world-writable directory is no danger", setup: func(e *testEnv) {
			e.files["/home"] = testFile{dir: true, mode: 0o777 | fs.ModeSticky, owner: uid(0)}
		}},
		{name: "files of root", setup: func(e *testEnv) {
			e.files["/home/alice/.ssh/known_hosts"] = testFile{data: "gw ssh-ed25519 AAAA\n", mode: 0o644, owner: uid(0)}
		}},
		{name: "known_hosts writable by everyone", setup: func(e *testEnv) {
			e.files["/home/alice/.ssh/known_hosts"] = testFile{data: "gw ssh-ed25519 AAAA\n", mode: 0o666}
		}, want: `x.yaml:2: profile "p": known_hosts file /home/alice/.ssh/known_hosts is refused: it can be written by every user (mode 0666): fix it with chmod go-w /home/alice/.ssh/known_hosts; whoever can change it can make shunt trust their server`},
		{name: "key in a directory its group can write", setup: func(e *testEnv) {
			e.files["/home/alice/.ssh"] = testFile{dir: true, mode: 0o770}
		}, want: `x.yaml:4: profile "p": identity file /home/alice/.ssh/id is refused: its directory /home/alice/.ssh can be written by its group (mode 0770): fix it with chmod go-w /home/alice/.ssh`},
		{name: "key of another user", setup: func(e *testEnv) {
			e.files["/home/alice/.ssh/id"] = testFile{data: testKey(e.t), mode: 0o600, owner: uid(1001)}
		}, want: `x.yaml:4: profile "p": identity file /home/alice/.ssh/id is refused: it belongs to uid 1001, neither root nor the user shunt acts for`},
		{name: "key others can write", setup: func(e *testEnv) {
			e.file("/home/alice/.ssh/id", testKey(e.t), 0o620)
		}, want: `identity file /home/alice/.ssh/id is refused: it can be written by its group (mode 0620)`},
		{name: "home of another user", setup: func(e *testEnv) {
			e.files["/home/alice"] = testFile{dir: true, mode: 0o755, owner: uid(1001)}
		}, want: `its directory /home/alice belongs to uid 1001`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if runtime.GOOS != "linux" {
				t.Skip("flows have no users here")
			}
			e := newTestEnv(t)
			e.file("/home/alice/.ssh/id", testKey(t), 0o600)
			tt.setup(e)
			_, err := e.parse("x.yaml", profile)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// A configuration file or ssh_config file that others can change is
// refused: whoever writes it chooses where flows go.
func TestConfigFileModesRefused(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Unix modes and users: Linux")
	}
	e := newTestEnv(t)
	e.files["/etc/shunt/shunt.yaml"] = testFile{data: "rules:\n  - action: block\n", mode: 0o664, owner: uid(0)}
	_, err := LoadLayers(Layers{Global: "/etc/shunt/shunt.yaml", Options: e.opts()})
	if want := "/etc/shunt/shunt.yaml: refused: other users can change this configuration file: it can be written by its group (mode 0664)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	e.files["/etc/shunt/shunt.yaml"] = testFile{data: "rules:\n  - action: block\n", mode: 0o644, owner: uid(1001)}
	_, err = LoadWith("/etc/shunt/shunt.yaml", e.opts())
	if want := "it belongs to uid 1001"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	e.files["/etc/shunt/shunt.yaml"] = testFile{data: "rules:\n  - action: block\n", mode: 0o644, owner: uid(0)}
	if _, err := LoadLayers(Layers{Global: "/etc/shunt/shunt.yaml", Options: e.opts()}); err != nil {
		t.Errorf("root's file, mode 0644: %v", err)
	}

	e.files["/home/alice/.ssh/config"] = testFile{data: "Host office\n  HostName gw\n", mode: 0o666}
	opts := e.opts()
	opts.SSHConfigFiles = []string{"~/.ssh/config"}
	_, err = ParseWith("x.yaml", []byte("profiles:\n  - name: p\n    ssh_config: office\n"), opts)
	if want := "ssh_config file /home/alice/.ssh/config is refused: it can be written by every user (mode 0666)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}
