package config

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/crypto/ssh"
)

// testEnv is a machine for tests: user alice (uid 1000) with HOME
// /home/alice, not under sudo, a user database with alice, bob and root,
// and files from an in-memory table. Only paths below the test's temporary
// directories come from the disk, so no result depends on the machine the
// tests run on.
type testEnv struct {
	t     *testing.T
	env   map[string]string
	euid  int
	users map[string]*user.User
	// files: path → content (mode 0600), or an error to return.
	files map[string]testFile
	disk  []string // directories served from the disk
	goos  string   // the system the configuration is read on: linux unless set
}

type testFile struct {
	data string
	mode fs.FileMode // of a directory too, when set
	err  error
	dir  bool
	// owner is the file's uid; nil: unknown (the FileInfo says none).
	owner *uint32
}

func newTestEnv(t *testing.T) *testEnv {
	e := &testEnv{
		t:    t,
		env:  map[string]string{"HOME": "/home/alice", "USER": "alice"},
		euid: 1000,
		users: map[string]*user.User{
			"alice": {Username: "alice", Uid: "1000", HomeDir: "/home/alice"},
			"bob":   {Username: "bob", Uid: "1001", HomeDir: "/home/bob"},
			"root":  {Username: "root", Uid: "0", HomeDir: "/root"},
		},
		files: map[string]testFile{
			"/home/alice/.ssh/known_hosts": {data: "gw ssh-ed25519 AAAA\n", mode: 0o644},
		},
	}
	return e
}

// dir is a temporary directory whose files come from the disk.
func (e *testEnv) dir() string {
	d := e.t.TempDir()
	e.disk = append(e.disk, d)
	return d
}

func (e *testEnv) file(path, data string, mode fs.FileMode) {
	e.files[path] = testFile{data: data, mode: mode}
}

func (e *testEnv) onDisk(name string) bool {
	for _, d := range e.disk {
		if strings.HasPrefix(name, d+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func (e *testEnv) machine() Machine {
	goos := e.goos
	if goos == "" {
		goos = "linux"
	}
	return Machine{
		GOOS:    goos,
		Getenv:  func(k string) string { return e.env[k] },
		Geteuid: func() int { return e.euid },
		CurrentUser: func() (*user.User, error) {
			for _, u := range e.users {
				if u.Uid == "1000" {
					return u, nil
				}
			}
			return nil, user.UnknownUserIdError(1000)
		},
		LookupUser: func(name string) (*user.User, error) {
			if u, ok := e.users[name]; ok {
				return u, nil
			}
			return nil, user.UnknownUserError(name)
		},
		ReadFile: func(name string) ([]byte, error) {
			if f, ok := e.files[name]; ok {
				switch {
				case f.err != nil:
					return nil, &fs.PathError{Op: "open", Path: name, Err: f.err}
				case f.dir:
					return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
				}
				return []byte(f.data), nil
			}
			if e.onDisk(name) {
				return os.ReadFile(name)
			}
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		Stat: func(name string) (fs.FileInfo, error) {
			if f, ok := e.files[name]; ok {
				// A file that cannot be read can still be stat'ed.
				if f.err != nil && !errors.Is(f.err, fs.ErrPermission) {
					return nil, &fs.PathError{Op: "stat", Path: name, Err: f.err}
				}
				return testInfo{name: filepath.Base(name), f: f}, nil
			}
			if e.onDisk(name) {
				return os.Stat(name)
			}
			return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
}

func (e *testEnv) opts() Options {
	return Options{Machine: e.machine(), SSHConfigFiles: []string{}}
}

func (e *testEnv) parse(path, data string) (*Config, error) {
	e.t.Helper()
	return ParseWith(path, []byte(data), e.opts())
}

type testInfo struct {
	name string
	f    testFile
}

func (i testInfo) Name() string { return i.name }
func (i testInfo) Size() int64  { return int64(len(i.f.data)) }
func (i testInfo) Mode() fs.FileMode {
	if i.f.dir && i.f.mode != 0 {
		return fs.ModeDir | i.f.mode
	}
	if i.f.dir {
		return fs.ModeDir | 0o755
	}
	if i.f.mode == 0 {
		return 0o600
	}
	return i.f.mode
}
func (i testInfo) ModTime() time.Time { return time.Time{} }
func (i testInfo) IsDir() bool        { return i.f.dir }
func (i testInfo) Sys() any {
	if i.f.owner == nil {
		return nil
	}
	return ownerSys(*i.f.owner)
}

// testKey is an unencrypted ed25519 private key, the same every run.
func testKey(t *testing.T) string {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	b, err := ssh.MarshalPrivateKey(k, "test")
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// testPublicKey is testKey's public half, as in a .pub file.
func testPublicKey(t *testing.T) string {
	k := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(pub))
}

// diff compares configuration values field by field, saying which differ.
func diff(want, got any) string {
	return cmp.Diff(want, got,
		cmpopts.IgnoreUnexported(Profile{}, Duration{}),
		cmpopts.EquateComparable(netip.Prefix{}),
		cmpopts.EquateEmpty())
}

// The home directory and user are chosen by one rule (ActingUser).
func TestActingUser(t *testing.T) {
	tests := []struct {
		name     string
		euid     int
		env      map[string]string
		noEntry  bool // the user database has no entry for uid 1000
		want     Account
		wantFail bool
	}{
		{name: "plain: $HOME", euid: 1000, env: map[string]string{"HOME": "/home/alice"},
			want: Account{Name: "alice", Home: "/home/alice"}},
		{name: "HOME changed on purpose wins over the user database", euid: 1000, env: map[string]string{"HOME": "/tmp/try"},
			want: Account{Name: "alice", Home: "/tmp/try"}},
		{name: "no HOME: the user database", euid: 1000, env: map[string]string{},
			want: Account{Name: "alice", Home: "/home/alice"}},
		{name: "sudo: the invoking user's entry, whatever HOME says", euid: 0, env: map[string]string{"SUDO_USER": "bob", "HOME": "/root"},
			want: Account{Name: "bob", Home: "/home/bob"}},
		{name: "sudo -E: the invoking user's entry too", euid: 0, env: map[string]string{"SUDO_USER": "bob", "HOME": "/home/bob-elsewhere"},
			want: Account{Name: "bob", Home: "/home/bob"}},
		{name: "SUDO_USER=root is root itself", euid: 0, env: map[string]string{"SUDO_USER": "root", "HOME": "/root"},
			want: Account{Name: "alice", Home: "/root"}},
		{name: "SUDO_USER left in the environment of a non-root process is ignored", euid: 1000, env: map[string]string{"SUDO_USER": "bob", "HOME": "/home/alice"},
			want: Account{Name: "alice", Home: "/home/alice"}},
		{name: "SUDO_USER unknown", euid: 0, env: map[string]string{"SUDO_USER": "ghost", "HOME": "/root"},
			want: Account{Name: "ghost"}, wantFail: true},
		{name: "no entry: HOME and USER", euid: 1000, noEntry: true, env: map[string]string{"HOME": "/h", "USER": "u"},
			want: Account{Name: "u", Home: "/h"}},
		{name: "no entry, no HOME", euid: 1000, noEntry: true, env: map[string]string{"USER": "u"},
			want: Account{Name: "u"}, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.euid, e.env = tt.euid, tt.env
			if tt.noEntry {
				delete(e.users, "alice")
			}
			got, err := e.machine().ActingUser()
			if (err != nil) != tt.wantFail {
				t.Errorf("err = %v, want failure %v", err, tt.wantFail)
			}
			if d := diff(tt.want, got); d != "" {
				t.Errorf("account (-want +got):\n%s", d)
			}
		})
	}
}

func TestUserFile(t *testing.T) {
	e := newTestEnv(t)
	if got := e.machine().userFile(); got != "/home/alice/.config/shunt/shunt.yaml" {
		t.Errorf("user file = %s", got)
	}
	e.env["XDG_CONFIG_HOME"] = "/x"
	if got := e.machine().userFile(); got != "/x/shunt/shunt.yaml" {
		t.Errorf("with XDG_CONFIG_HOME: %s", got)
	}
	e.euid, e.env["SUDO_USER"] = 0, "bob"
	if got := e.machine().userFile(); got != "/home/bob/.config/shunt/shunt.yaml" {
		t.Errorf("under sudo (XDG_CONFIG_HOME may be anyone's): %s", got)
	}
}

// Under sudo, "~", %d, %u and the default user are the invoking user's.
func TestParseUnderSudo(t *testing.T) {
	e := newTestEnv(t)
	e.euid, e.env = 0, map[string]string{"SUDO_USER": "bob", "HOME": "/root", "USER": "root"}
	e.file("/home/bob/.ssh/known_hosts", "", 0o600)
	c, err := e.parse("s.yaml", "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id_bob]\nrules:\n  - action: tunnel\n    profile: p\n")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Profiles[0]
	want := Profile{Name: "p", Host: StringList{"gw"}, Port: 22, User: "bob", IdentityFiles: []string{"/home/bob/.ssh/id_bob"},
		KnownHosts: StringList{"/home/bob/.ssh/known_hosts"}, Line: 2, File: "s.yaml"}
	if d := diff(want, p); d != "" {
		t.Errorf("profile (-want +got):\n%s", d)
	}
}

// A home directory that cannot be known is said, not guessed.
func TestUnknownHome(t *testing.T) {
	e := newTestEnv(t)
	e.euid, e.env = 0, map[string]string{"SUDO_USER": "ghost", "HOME": "/root"}
	c, err := e.parse("u.yaml", "profiles:\n  - name: p\n    host: gw\n    host_key_policy: accept-new\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Problems) == 0 || !strings.HasPrefix(c.Problems[0].String(), "u.yaml:2: the home directory of the user shunt acts for is unknown (SUDO_USER ghost is not in the user database") {
		t.Errorf("problems = %v", c.Problems)
	}
	if c.Profiles[0].KnownHosts[0] != "~/.ssh/known_hosts" || c.Profiles[0].User != "ghost" {
		t.Errorf("profile = %+v", c.Profiles[0])
	}
}
