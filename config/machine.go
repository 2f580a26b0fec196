package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
)

// Machine is what reading a configuration asks of the machine it runs on:
// the environment, the user database and the files the configuration
// names. A nil field means the real machine's; tests fill them, so that no
// result depends on where the tests run.
type Machine struct {
	// Getenv reads the environment (SUDO_USER, HOME, USER,
	// XDG_CONFIG_HOME); nil means os.Getenv.
	Getenv func(string) string
	// Geteuid is the effective user id; nil means os.Geteuid.
	Geteuid func() int
	// CurrentUser is the user database's entry for the user running
	// shunt; nil means user.Current.
	CurrentUser func() (*user.User, error)
	// LookupUser finds a user by name in the user database (for SUDO_USER
	// and the users of rules); nil means user.Lookup.
	LookupUser func(name string) (*user.User, error)
	// ReadFile and Stat reach the files the configuration names: its
	// layers, ssh_config files, identity and known_hosts files; nil means
	// os.ReadFile and os.Stat.
	ReadFile func(name string) ([]byte, error)
	Stat     func(name string) (fs.FileInfo, error)
	// GOOS is the operating system, for what only some can do (look up
	// a flow's user); "" means runtime.GOOS.
	GOOS string
}

// withDefaults fills the nil fields with the real machine's.
func (m Machine) withDefaults() Machine {
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if m.Geteuid == nil {
		m.Geteuid = os.Geteuid
	}
	if m.CurrentUser == nil {
		m.CurrentUser = user.Current
	}
	if m.LookupUser == nil {
		m.LookupUser = user.Lookup
	}
	if m.ReadFile == nil {
		m.ReadFile = os.ReadFile
	}
	if m.Stat == nil {
		m.Stat = os.Stat
	}
	if m.GOOS == "" {
		m.GOOS = runtime.GOOS
	}
	return m
}

// Account is the local user shunt acts for: the configuration describes
// that user's keys, known_hosts and ssh_config.
type Account struct {
	// Name is the login name: the default SSH user, and ssh_config's %u.
	Name string
	// Home is the home directory: "~" and ssh_config's %d. Empty when it
	// cannot be known; "~" then stays as written.
	Home string
}

// ActingUser returns the user shunt acts for, and that user's home
// directory, by one rule:
//
//   - Under sudo (running as root, with SUDO_USER naming another user): the
//     user who ran sudo, with the home directory of that user's entry in
//     the user database. shunt up must run as root, but the configuration
//     describes that user's keys, known_hosts and ssh_config, and that
//     user's name is the default SSH login. $HOME is not used there: it is
//     root's or the user's depending on sudoers (env_reset,
//     always_set_home), and a configuration must not mean other files
//     depending on that.
//   - Otherwise the user running shunt, and $HOME: the user's own word for
//     where home is, as Go, the XDG directories and most tools take it
//     (so HOME=/tmp/try shunt check reads /tmp/try/.ssh). When $HOME is
//     not set, the user database's entry (ssh(1) always takes that one;
//     the two agree unless $HOME was changed on purpose).
//
// The login name is the user database's; $USER only when it has no entry
// (e.g. an unnamed uid in a container).
func (m Machine) ActingUser() (Account, error) {
	m = m.withDefaults()
	if name, ok := m.sudoUser(); ok {
		u, err := m.LookupUser(name)
		if err != nil {
			return Account{Name: name}, fmt.Errorf("SUDO_USER %s is not in the user database: %w", name, err)
		}
		if u.HomeDir == "" {
			return Account{Name: u.Username}, fmt.Errorf("the user database has no home directory for %s (SUDO_USER)", name)
		}
		return Account{Name: u.Username, Home: u.HomeDir}, nil
	}
	a := Account{Home: m.Getenv("HOME")}
	u, err := m.CurrentUser()
	if err == nil {
		a.Name = u.Username
		if a.Home == "" {
			a.Home = u.HomeDir
		}
	}
	if a.Name == "" {
		a.Name = m.Getenv("USER")
	}
	if a.Home == "" {
		if err == nil {
			err = errors.New("HOME is not set and the user database gives no home directory")
		}
		return a, fmt.Errorf("no home directory: %w", err)
	}
	return a, nil
}

// sudoUser is the user who ran sudo, when shunt runs as root under sudo
// for another user.
func (m Machine) sudoUser() (string, bool) {
	if m.Geteuid() != 0 {
		return "", false
	}
	name := m.Getenv("SUDO_USER")
	return name, name != "" && name != "root"
}

// userFile is UserFile for the machine.
func (m Machine) userFile() string {
	m = m.withDefaults()
	// Under sudo the environment may be root's or the user's: only the
	// user database is sure.
	if _, sudo := m.sudoUser(); !sudo {
		if x := m.Getenv("XDG_CONFIG_HOME"); x != "" {
			return filepath.Join(x, "shunt", "shunt.yaml")
		}
	}
	a, _ := m.ActingUser()
	if a.Home == "" {
		return ""
	}
	return filepath.Join(a.Home, ".config", "shunt", "shunt.yaml")
}

// expandHome replaces a leading "~" with home; with no home it leaves the
// path as written.
func expandHome(p, home string) string {
	if home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
		return filepath.Join(home, p[1:])
	}
	return p
}

// flowUIDs says whether flows can be traced to their users' uids on goos
// (Linux's sock_diag, macOS's pcblist; Windows's users are SIDs).
func flowUIDs(goos string) bool { return goos == "linux" || goos == "darwin" }

// flowApplications says whether flows can be traced to their
// applications on goos.
func flowApplications(goos string) bool {
	return goos == "linux" || goos == "darwin" || goos == "windows"
}
