package engine

import (
	"io/fs"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/platform"
)

// capsPlan converts yaml, read for root on a machine where no file exists.
func capsPlan(t *testing.T, yaml string) *Plan {
	t.Helper()
	m := config.Machine{
		Getenv:      func(k string) string { return map[string]string{"HOME": "/root", "USER": "root"}[k] },
		Geteuid:     func() int { return 0 },
		CurrentUser: func() (*user.User, error) { return &user.User{Username: "root", Uid: "0", HomeDir: "/root"}, nil },
		LookupUser:  func(name string) (*user.User, error) { return nil, user.UnknownUserError(name) },
		ReadFile: func(name string) ([]byte, error) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		},
		Stat: func(name string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
		},
	}
	cfg, err := config.ParseWith("shunt.yaml", []byte(yaml), config.Options{Machine: m, SSHConfigFiles: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Convert(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// owners stands in for the file system: the uid owning each path and what
// lies below it; everything else is root's.
func ownersOf(m map[string]uint32) func(string) (uint32, bool) {
	return func(path string) (uint32, bool) {
		for p := filepath.Clean(path); ; p = filepath.Dir(p) {
			if uid, ok := m[p]; ok {
				return uid, true
			}
			if p == "/" || p == "." {
				return 0, true
			}
		}
	}
}

// The capabilities kept after set-up follow the configuration and the
// machine: CAP_NET_ADMIN always, the others only while something that
// runs after set-up needs them.
func TestCapsNeeded(t *testing.T) {
	const profile = "profiles:\n  - name: p\n    host: 10.9.9.9\n    identity_files: [/etc/shunt/id]\n    known_hosts: [/etc/shunt/known_hosts]\n    allowed_users: any\n"
	const tunnel = "rules:\n  - destinations: [10.0.0.0/8]\n    action: tunnel\n    profile: p\n"
	alice := &broker.FileOwner{UID: 1000, GID: 1000}
	aliceHome := map[string]uint32{"/home/alice": 1000}
	for _, tt := range []struct {
		name  string
		yaml  string
		facts capFacts
		want  string
	}{
		{"root's files only", profile + tunnel, capFacts{}, "CAP_NET_ADMIN"},
		{"rules with users: the refused flow's application", profile + "rules:\n  - destinations: [10.0.0.0/8]\n    users: [1000]\n    action: tunnel\n    profile: p\n", capFacts{},
			"CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_SYS_PTRACE"},
		{"allowed_users by default: the refused flow's application", strings.Replace(profile, "    allowed_users: any\n", "", 1) + tunnel, capFacts{},
			"CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_SYS_PTRACE"},
		{"rules with applications", profile + tunnel + "  - applications: [curl]\n    action: direct\n", capFacts{},
			"CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_SYS_PTRACE"},
		{"always-direct applications", profile + tunnel + "always_direct_applications: [firefox]\n", capFacts{},
			"CAP_DAC_READ_SEARCH CAP_NET_ADMIN CAP_SYS_PTRACE"},
		{"under sudo", profile + tunnel, capFacts{sudo: alice}, "CAP_DAC_READ_SEARCH CAP_NET_ADMIN"},
		{"a key in a user's home", "profiles:\n  - name: p\n    host: 10.9.9.9\n    identity_files: [/home/alice/.ssh/id]\n    known_hosts: [/etc/shunt/known_hosts]\n    allowed_users: any\n" + tunnel,
			capFacts{owner: ownersOf(aliceHome)}, "CAP_DAC_READ_SEARCH CAP_NET_ADMIN"},
		{"accept-new in root's directory", strings.Replace(profile, "    known_hosts", "    host_key_policy: accept-new\n    known_hosts", 1) + tunnel,
			capFacts{owner: ownersOf(aliceHome)}, "CAP_NET_ADMIN"},
		{"accept-new in the user's home", "profiles:\n  - name: p\n    host: 10.9.9.9\n    identity_files: [/etc/shunt/id]\n    host_key_policy: accept-new\n    known_hosts: [/home/alice/.ssh/known_hosts]\n    allowed_users: any\n" + tunnel,
			capFacts{sudo: alice, owner: ownersOf(aliceHome)}, "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_NET_ADMIN"},
		{"strict in the user's home records nothing", "profiles:\n  - name: p\n    host: 10.9.9.9\n    identity_files: [/etc/shunt/id]\n    known_hosts: [/home/alice/.ssh/known_hosts]\n    allowed_users: any\n" + tunnel,
			capFacts{sudo: alice, owner: ownersOf(aliceHome)}, "CAP_DAC_READ_SEARCH CAP_NET_ADMIN"},
		{"another user's agent", profile + tunnel, capFacts{agentSocket: "/tmp/ssh-x/agent.1", owner: ownersOf(map[string]uint32{"/tmp/ssh-x": 1000})},
			"CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_NET_ADMIN"},
		{"root's agent", profile + tunnel, capFacts{agentSocket: "/tmp/ssh-x/agent.1"}, "CAP_NET_ADMIN"},
		{"resolv.conf root's", profile + tunnel + "  - destinations: [mail.corp.example]\n    action: tunnel\n    profile: p\ndns:\n  mode: resolv.conf\n",
			capFacts{dnsMode: platform.DNSModeFile, resolvConf: "/etc/resolv.conf"}, "CAP_NET_ADMIN"},
		{"resolv.conf another user's", profile + tunnel + "  - destinations: [mail.corp.example]\n    action: tunnel\n    profile: p\ndns:\n  mode: resolv.conf\n",
			capFacts{dnsMode: platform.DNSModeFile, resolvConf: "/etc/resolv.conf", owner: ownersOf(map[string]uint32{"/etc/resolv.conf": 101})},
			"CAP_CHOWN CAP_DAC_OVERRIDE CAP_NET_ADMIN"},
		{"systemd-resolved takes no file", profile + tunnel + "  - destinations: [mail.corp.example]\n    action: tunnel\n    profile: p\ndns:\n  mode: systemd-resolved\n",
			capFacts{dnsMode: platform.DNSModeResolved, resolvConf: "/etc/resolv.conf", owner: ownersOf(map[string]uint32{"/etc/resolv.conf": 101})},
			"CAP_NET_ADMIN"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := capsPlan(t, tt.yaml)
			f := tt.facts
			if f.owner == nil {
				f.owner = ownersOf(nil)
			}
			var got []string
			for _, n := range capsNeeded(plan, f) {
				got = append(got, n.cap.String())
				if len(n.why) == 0 {
					t.Errorf("%s kept without a reason", n.cap)
				}
			}
			// Sorted by name for the comparison.
			if g := strings.Join(slices.Sorted(slices.Values(got)), " "); g != tt.want {
				t.Errorf("kept %s, want %s", g, tt.want)
			}
		})
	}
}

// A reload that needs a capability dropped at start is refused, with the
// capability and why; one within what was kept goes through the check.
func TestCapsAllowReload(t *testing.T) {
	const base = "profiles:\n  - name: p\n    host: 10.9.9.9\n    identity_files: [/etc/shunt/id]\n    known_hosts: [/etc/shunt/known_hosts]\n    allowed_users: any\nrules:\n  - destinations: [10.0.0.0/8]\n    action: tunnel\n    profile: p\n"
	e := &Engine{
		kept:        []platform.Capability{platform.CapNetAdmin},
		capsDropped: true,
		facts:       func(*Plan) capFacts { return capFacts{owner: ownersOf(nil)} },
	}
	if err := e.capsAllow(capsPlan(t, base)); err != nil {
		t.Errorf("the same needs refused: %v", err)
	}
	err := e.capsAllow(capsPlan(t, base+"  - applications: [curl]\n    action: direct\n"))
	if err == nil || !strings.Contains(err.Error(), "CAP_SYS_PTRACE (rules name applications") || !strings.Contains(err.Error(), "restart shunt") {
		t.Errorf("a reload needing CAP_SYS_PTRACE: %v", err)
	}
	e.capsDropped = false
	if err := e.capsAllow(capsPlan(t, base+"  - applications: [curl]\n    action: direct\n")); err != nil {
		t.Errorf("nothing dropped, yet refused: %v", err)
	}
}
