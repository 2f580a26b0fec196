package config

import (
	"errors"
	"fmt"
	"io/fs"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Problem is something wrong with a file the configuration names, as
// found on this machine.
type Problem struct {
	File string
	Line int
	Msg  string
	// Fatal means nothing the profile may try can work: shunt check fails,
	// and shunt up logs it as an error. Otherwise it is a warning:
	// something else may work (another key, the agent, a password).
	Fatal bool
}

// String is "file:line: message".
func (p Problem) String() string {
	return (&Error{File: p.File, Line: p.Line, Msg: p.Msg}).Error()
}

// report files a problem of a profile: fatal when nothing could work, a
// warning when something else may.
type report struct {
	fatalAt, warnAt func(file string, line int, format string, args ...any)
}

// checkFiles checks the files a profile names, as shunt up will use them:
// identity and certificate files, known_hosts files. Fatal is a profile
// that cannot log in or cannot accept any host key; the same problem in a
// profile that no rule uses is only a warning, since it stops nothing.
// Absent default identity files are normal and not reported.
func (c *Config) checkFiles(p *Profile, used bool, r report) {
	fatal := r.fatalAt
	if !used {
		fatal = func(file string, line int, format string, args ...any) {
			r.warnAt(file, line, format+" (a warning only: no rule uses profile %q)", append(args, p.Name)...)
		}
	}
	c.checkIdentities(p, fatal, r.warnAt)
	c.checkKnownHosts(p, fatal, r.warnAt)
}

// mayReadAsRoot is true for a file this user may not read, when not
// running as root: shunt up, which runs as root, may.
func (c *Config) mayReadAsRoot(err error) bool {
	return errors.Is(err, fs.ErrPermission) && c.machine.Geteuid() != 0
}

func (c *Config) checkIdentities(p *Profile, fatal, warnAt func(string, int, string, ...any)) {
	methods := p.AuthMethods
	if len(methods) == 0 {
		methods = DefaultAuthMethods
	}
	if !slices.Contains(methods, AuthPublicKey) {
		if len(p.IdentityFiles) > 0 {
			warnAt(p.File, p.lineOf("identity_files", -1), "profile %q: its identity files are never used: auth_methods has no publickey", p.Name)
		}
		return
	}
	type problem struct {
		line int
		msg  string
	}
	var problems []problem
	usable := 0
	for j, f := range p.IdentityFiles {
		line := p.lineOf("identity_files", j)
		msg, maybe := c.identityProblem(f)
		switch {
		case maybe:
			warnAt(p.File, line, "profile %q: %s; shunt up, as root, may", p.Name, msg)
			usable++
		case msg != "":
			problems = append(problems, problem{line, msg})
		default:
			usable++ // its mode: checkModes
		}
	}
	for j, f := range p.CertificateFiles {
		if _, err := c.machine.Stat(f); errors.Is(err, fs.ErrNotExist) {
			warnAt(p.File, p.lineOf("certificate_files", j), "profile %q: certificate file %s does not exist: its key logs in without it, if the server allows that", p.Name, f)
		}
	}
	if len(problems) == 0 {
		return
	}
	var others []string
	if usable > 0 {
		others = append(others, "its other identity files")
	}
	if !p.IdentitiesOnly {
		others = append(others, "the ssh-agent's keys")
	}
	for _, m := range methods {
		if m != AuthPublicKey {
			others = append(others, m)
		}
	}
	for _, pr := range problems {
		if len(others) == 0 {
			fatal(p.File, pr.line, "profile %q: %s; no login can work: the profile allows only publickey (auth_methods) with identities_only, and none of its identity files can be used", p.Name, pr.msg)
			continue
		}
		warnAt(p.File, pr.line, "profile %q: %s; shunt tries %s", p.Name, pr.msg, strings.Join(others, ", "))
	}
}

// identityProblem says why f cannot serve as a private key, or "". maybe
// is a file this user may not read but root (shunt up) may.
func (c *Config) identityProblem(f string) (msg string, maybe bool) {
	st, err := c.machine.Stat(f)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("identity file %s does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f %s", f, f), false
	case err != nil:
		return fmt.Sprintf("identity file %s cannot be read (%v)", f, cause(err)), c.mayReadAsRoot(err)
	case st.IsDir():
		return fmt.Sprintf("identity file %s is a directory: name the private key file in it", f), false
	}
	data, err := c.machine.ReadFile(f)
	if err != nil {
		return fmt.Sprintf("identity file %s cannot be read (%v)", f, cause(err)), c.mayReadAsRoot(err)
	}
	_, err = ssh.ParseRawPrivateKey(data)
	if _, encrypted := errors.AsType[*ssh.PassphraseMissingError](err); err == nil || encrypted {
		return "", false // shunt asks for an encrypted key's passphrase
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(data); err == nil {
		return fmt.Sprintf("identity file %s is a public key: name the private key (%s)", f, strings.TrimSuffix(f, ".pub")), false
	}
	return fmt.Sprintf("identity file %s is not a private key that shunt can read", f), false
}

// checkModes refuses the files of a profile that other users could
// change or read, as OpenSSH refuses them: a private key that others can
// read ("UNPROTECTED PRIVATE KEY FILE"), and any key, certificate or
// known_hosts file that others can change, or that lies in a directory
// they can change (othersMayChange). Whoever can write a known_hosts file
// can make shunt trust their server; whoever can replace a key or
// certificate chooses which login is used. These are errors of the
// configuration, whether or not a rule uses the profile: shunt runs with
// none of them.
func (c *Config) checkModes(p *Profile, errorAt func(string, int, string, ...any)) {
	if runtime.GOOS == "windows" {
		return // no Unix modes
	}
	for j, f := range p.IdentityFiles {
		line := p.lineOf("identity_files", j)
		if why := c.machine.othersMayChange(f); why != "" {
			errorAt(p.File, line, "profile %q: identity file %s is refused: %s", p.Name, f, why)
			continue
		}
		if msg, _ := c.identityProblem(f); msg != "" {
			continue // not a key: said already
		}
		if st, err := c.machine.Stat(f); err == nil && st.Mode().Perm()&0o077 != 0 {
			errorAt(p.File, line, "profile %q: identity file %s is refused: it can be used by other users (mode %04o), and OpenSSH refuses such a key as UNPROTECTED PRIVATE KEY FILE; restrict it with chmod 600 %s", p.Name, f, st.Mode().Perm(), f)
		}
	}
	for j, f := range p.CertificateFiles {
		if why := c.machine.othersMayChange(f); why != "" {
			errorAt(p.File, p.lineOf("certificate_files", j), "profile %q: certificate file %s is refused: %s", p.Name, f, why)
		}
	}
	for j, f := range p.KnownHosts {
		if why := c.machine.othersMayChange(f); why != "" {
			errorAt(p.File, p.lineOf("known_hosts", j), "profile %q: known_hosts file %s is refused: %s; whoever can change it can make shunt trust their server", p.Name, f, why)
		}
	}
}

func (c *Config) checkKnownHosts(p *Profile, fatal, warnAt func(string, int, string, ...any)) {
	policy, err := hostKeyPolicy(p.HostKeyPolicy)
	if err != nil {
		return // reported already
	}
	var missing, found []string
	missingAt := map[string]int{}
	for j, f := range p.KnownHosts {
		line := p.lineOf("known_hosts", j)
		st, err := c.machine.Stat(f)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, f)
			missingAt[f] = line
			continue
		}
		if err == nil && st.IsDir() {
			fatal(p.File, line, "profile %q: known_hosts file %s is a directory: name a file; no connection can work", p.Name, f)
			continue
		}
		if err == nil {
			_, err = c.machine.ReadFile(f)
		}
		switch {
		case c.mayReadAsRoot(err):
			warnAt(p.File, line, "profile %q: known_hosts file %s cannot be read by this user (%v); shunt up, as root, may", p.Name, f, cause(err))
		case err != nil:
			fatal(p.File, line, "profile %q: known_hosts file %s cannot be read (%v): no connection can work", p.Name, f, cause(err))
		}
		found = append(found, f)
	}
	if len(missing) == 0 {
		return
	}
	first := p.KnownHosts[0]
	hosts := "its server"
	if len(p.Host) > 0 {
		hosts = strings.Join(p.Host, ", ")
	}
	for _, f := range missing {
		line := missingAt[f]
		switch {
		case policy == PolicyStrict && len(found) == 0:
			if f != missing[0] {
				continue // one error says it all
			}
			files := "file " + f + " does not exist"
			if len(missing) > 1 {
				files = "files " + strings.Join(missing, ", ") + " do not exist"
			}
			fatal(p.File, line, "profile %q: known_hosts %s: with host_key_policy strict%s, every connection to %s will be refused. "+
				"Add the server's host key with: %s (and check that the fingerprints ssh-keygen -lf %s prints are the server's), or set host_key_policy: accept-new",
				p.Name, files, defaultNote(p.HostKeyPolicy), hosts, keyscan(p, first), first)
		case f == first && policy == PolicyAcceptNew:
			warnAt(p.File, line, "profile %q: known_hosts file %s does not exist yet: with host_key_policy accept-new, the host key %s first offers is trusted unchecked and recorded there. To check it first: %s",
				p.Name, f, hosts, keyscan(p, f))
		case f == first && policy == PolicyAsk:
			warnAt(p.File, line, "profile %q: known_hosts file %s does not exist yet: with host_key_policy ask, you are asked to confirm the host key of %s at the first connection, and it is recorded there. To fetch it now: %s",
				p.Name, f, hosts, keyscan(p, f))
		default:
			warnAt(p.File, line, "profile %q: known_hosts file %s does not exist (it is read as empty)", p.Name, f)
		}
	}
}

func defaultNote(policy string) string {
	if policy == "" {
		return " (the default)"
	}
	return ""
}

// keyscan is the command that adds the profile's servers' host keys to
// file.
func keyscan(p *Profile, file string) string {
	cmd := "ssh-keyscan"
	if p.Port != DefaultSSHPort {
		cmd += " -p " + strconv.Itoa(p.Port)
	}
	if len(p.Host) == 0 {
		cmd += " HOST" // host_from_application: each server the rules reach
	}
	for _, h := range p.Host {
		cmd += " " + h
	}
	return cmd + " >> " + file
}

// checkAlias warns about an ssh_config alias that no ssh_config file
// defines: shunt then connects to a host of that name, with none of the
// settings meant for it.
func (c *Config) checkAlias(p *Profile, warnAt func(string, int, string, ...any)) {
	if c.sshConfigs == nil {
		return
	}
	defined, sure := c.sshConfigs.defines(p.SSHConfig)
	if defined || !sure {
		return
	}
	files := c.sshConfigFiles
	if files == nil {
		files = DefaultSSHConfigFiles()
	}
	where := "no ssh_config file exists (" + strings.Join(files, ", ") + ")"
	if len(c.sshConfigRead) > 0 {
		where = "no Host line of " + strings.Join(c.sshConfigRead, " or ") + " names it"
	}
	warnAt(p.File, p.lineOf("ssh_config", -1), "profile %q: ssh_config host %q is not defined: %s, so shunt connects to a host named %q with none of its settings; check the spelling against the Host lines",
		p.Name, p.SSHConfig, where, p.Host[0])
}

// usedProfiles are the profiles a tunnel rule names, and those they jump
// through.
func (c *Config) usedProfiles() map[string]bool {
	jump := map[string]string{}
	for _, p := range c.Profiles {
		jump[p.Name] = p.Jump
	}
	used := map[string]bool{}
	for _, r := range c.Rules {
		for name := r.Profile; name != "" && !used[name]; name = jump[name] {
			used[name] = true
		}
	}
	return used
}

// cause is an error without the path the message already names.
func cause(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}
