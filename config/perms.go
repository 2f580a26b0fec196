package config

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
)

// actingUID is the uid of the user shunt acts for (ActingUser): under
// sudo the user database's uid of SUDO_USER (or SUDO_UID when the database
// has no entry), otherwise the effective uid.
func (m Machine) actingUID() (uint32, bool) {
	m = m.withDefaults()
	name, sudo := m.sudoUser()
	if !sudo {
		return uint32(m.Geteuid()), true
	}
	if u, err := m.LookupUser(name); err == nil {
		if id, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			return uint32(id), true
		}
	}
	if id, err := strconv.ParseUint(m.Getenv("SUDO_UID"), 10, 32); err == nil {
		return uint32(id), true
	}
	return 0, false
}

// trusted reports whether a file owned by uid may be trusted, as OpenSSH
// trusts a user's files: root's, and those of the user shunt acts for or
// runs as.
func (m Machine) trusted(uid uint32) bool {
	if uid == 0 || uid == uint32(m.Geteuid()) {
		return true
	}
	acting, ok := m.actingUID()
	return ok && uid == acting
}

// othersMayChange says how another user could change the file at path, or
// "" when none can: the file, or a directory above it up to /, is
// writable by its group or by everyone (a directory with the sticky bit,
// such as /tmp, excepted: others cannot replace what is in it), or is
// owned by a user other than root and shunt's own. These are OpenSSH's
// checks of ~/.ssh/config and, with StrictModes, of authorized_keys and
// the directories above it. A path that does not exist is not judged
// (its directories are); symbolic links are followed (os.Stat).
func (m Machine) othersMayChange(path string) string {
	if runtime.GOOS == "windows" {
		return "" // no Unix modes
	}
	m = m.withDefaults()
	if abs, err := filepath.Abs(path); err == nil {
		path = abs // a relative path's directories count too
	}
	for p, first := filepath.Clean(path), true; ; first = false {
		if st, err := m.Stat(p); err == nil {
			what := "its directory " + p
			if first {
				what = "it"
			}
			mode := st.Mode()
			sticky := st.IsDir() && mode&fs.ModeSticky != 0
			switch {
			case mode.Perm()&0o022 != 0 && !sticky:
				who := "its group"
				if mode.Perm()&0o002 != 0 {
					who = "every user"
				}
				return fmt.Sprintf("%s can be written by %s (mode %04o): fix it with chmod go-w %s", what, who, mode.Perm(), p)
			}
			if uid, ok := fileOwner(st); ok && !m.trusted(uid) {
				return fmt.Sprintf("%s belongs to uid %d, neither root nor the user shunt acts for: that user can change it; fix it with chown", what, uid)
			}
		}
		up := filepath.Dir(p)
		if up == p || !filepath.IsAbs(up) {
			return ""
		}
		p = up
	}
}

// configFileSafe refuses a configuration file that other users can change:
// whoever writes it chooses which SSH identities carry which flows.
func (m Machine) configFileSafe(path string) error {
	if why := m.othersMayChange(path); why != "" {
		return &Error{File: path, Msg: "refused: other users can change this configuration file: " + why}
	}
	return nil
}

// resolveAllowedUsers resolves a profile's allowed_users, or fills their
// default: the daemon's own uid for shunt daemon, else the uid of the
// user shunt acts for. A profile that serves every user is a warning.
func (c *Config) resolveAllowedUsers(p *Profile, errorAt, warnAt func(string, int, string, ...any)) {
	p.allowUIDs, p.allowAny = nil, false
	line := p.lineOf("allowed_users", -1)
	if len(p.AllowedUsers) == 0 {
		uid, ok := c.actingUID, c.actingUIDOK
		if c.daemon {
			uid, ok = uint32(c.machine.Geteuid()), true
		}
		if !ok {
			if !c.tunnels(p.Name) {
				return // carries no flow anyway
			}
			errorAt(p.File, p.Line, "profile %q: the uid of the user shunt acts for is unknown, so no flow could use the profile: write allowed_users with the users whose flows it carries", p.Name)
			return
		}
		p.allowUIDs = []uint32{uid}
	}
	for j := range p.AllowedUsers {
		u := &p.AllowedUsers[j]
		if s := strings.TrimSpace(u.Raw); s == "any" || s == "*" {
			p.allowAny = true
			u.named = false
			continue
		}
		u.resolve(c.machine)
		if u.err != nil {
			errorAt(p.File, u.Line, "profile %q: allowed_users: %v, or any for every user", p.Name, u.err)
			continue
		}
		p.allowUIDs = append(p.allowUIDs, u.UID)
	}
	if p.allowAny {
		if len(p.AllowedUsers) > 1 {
			errorAt(p.File, line, "profile %q: allowed_users has any and more: any already means every user; keep it alone, or list the users", p.Name)
		}
		p.allowUIDs = nil
		warnAt(p.File, line, "profile %q serves every user: with allowed_users: any, the flows of every local user (and of programs that cannot be traced to one) ride on its SSH login as %s; list the users instead, if that is not meant", p.Name, p.User)
		return
	}
	if goos := c.machine.GOOS; !flowUIDs(goos) && c.tunnels(p.Name) {
		errorAt(p.File, p.Line, "profile %q: flows cannot be traced to their users' uids on %s yet, so shunt cannot check whose flows ride on the profile: write allowed_users: any to let every local user's", p.Name, goos)
	}
}

// tunnels reports whether a tunnel rule names the profile.
func (c *Config) tunnels(profile string) bool {
	for _, r := range c.Rules {
		if r.Action == ActionTunnel && r.Profile == profile {
			return true
		}
	}
	return false
}

// OthersMayChange says how a user other than root and the one shunt acts
// for could change the file at path (the file or a directory above it is
// writable by a group or everyone, or belongs to another user), or ""
// when none can: OpenSSH's StrictModes checks. shunt gateway applies them
// to its authorized_keys and host key, as sshd does.
func (m Machine) OthersMayChange(path string) string { return m.othersMayChange(path) }
