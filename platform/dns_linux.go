package platform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// NewOSDNS chooses the manager of opts.Mode and reads the upstreams the
// system uses now; it changes nothing until Set. In DNSModeAuto it picks
// systemd-resolved when resolv.conf points at its stub and resolved
// answers on the bus, refuses when resolvconf or NetworkManager own the
// file (they would rewrite it under shunt), and otherwise rewrites
// resolv.conf. Call CleanUpDNS before it, at start.
func NewOSDNS(opts DNSOptions) (OSDNS, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cur, err := inspectResolvConf(opts.ResolvConf)
	if err != nil && opts.Mode != DNSModeResolved {
		return nil, err
	}
	if err == nil && cur.shunts && opts.Mode != DNSModeResolved {
		if backup, berr := opts.backupPath(); berr == nil {
			if _, serr := os.Lstat(backup); serr == nil {
				return nil, fmt.Errorf("%s was written by shunt (its first line says so), by a run that did not stop cleanly: CleanUpDNS restores it from %s, and must run before NewOSDNS", opts.ResolvConf, backup)
			}
		}
		return nil, fmt.Errorf("%s was written by shunt (its first line says so) and is still there: another shunt is running, or the backup in the state directory is gone; restore the file by hand", opts.ResolvConf)
	}
	switch opts.Mode {
	case DNSModeOff:
		return &offDNS{up: cur.rc.upstreams()}, nil
	case DNSModeFile:
		if owner := cur.owner(); owner != "" {
			opts.Log.WithField("file", opts.ResolvConf).Warnf("dns.mode is resolv.conf although %s manages the file: shunt writes it and restores it at exit, but %s may rewrite it meanwhile, and then names no longer come to shunt", owner, owner)
		}
		return newFileDNS(opts, cur)
	case DNSModeResolved:
		if err == nil && !cur.pointsAtResolved() {
			opts.Log.WithField("file", opts.ResolvConf).Warn("dns.mode is systemd-resolved but resolv.conf does not point at its stub resolver (127.0.0.53): programs that read resolv.conf bypass systemd-resolved, and shunt")
		}
		r, err := newResolvedDNS(opts)
		if err != nil {
			return nil, fmt.Errorf("dns.mode systemd-resolved: %w", err)
		}
		return r, nil
	}
	// Auto.
	if cur.pointsAtResolved() {
		r, rerr := newResolvedDNS(opts)
		if rerr == nil {
			opts.Log.Info("DNS: resolv.conf points at systemd-resolved, which answers on the bus: shunt sets per-link DNS on its device there")
			return r, nil
		}
		if cur.symlinkIntoResolved() {
			return nil, fmt.Errorf("dns.mode auto: %s links to systemd-resolved's file, but %v: start it, or set dns.mode: resolv.conf (shunt replaces the link and restores it) or off", opts.ResolvConf, rerr)
		}
		opts.Log.WithError(rerr).Warnf("DNS: %s names 127.0.0.53, but systemd-resolved does not answer on the bus; rewriting the file", opts.ResolvConf)
	}
	if owner := cur.owner(); owner != "" {
		return nil, fmt.Errorf("dns.mode auto: %s is managed by %s (%s), which would rewrite shunt's changes and send names past shunt; set dns.mode: systemd-resolved (if %s hands DNS to it), resolv.conf (shunt writes the file anyway and restores it at exit; %s may overwrite it meanwhile), or off (nothing changes; point your resolver at shunt's server yourself)", opts.ResolvConf, owner, cur.ownerWhy, owner, owner)
	}
	return newFileDNS(opts, cur)
}

// CleanUpDNS undoes what a run that did not stop cleanly left: when the
// state directory holds a backup of resolv.conf, it is restored if the file
// is still shunt's, and dropped with a warning if someone rewrote the file
// since (their file stays). Call it at start, before NewOSDNS, once no
// other shunt can be using the state directory (after Prepare).
func CleanUpDNS(opts DNSOptions) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if opts.StateDir == "" {
		return nil
	}
	path, _ := opts.backupPath()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the backup of resolv.conf: %w", err)
	}
	b, perr := parseBackup(data)
	target := opts.ResolvConf
	if perr == nil {
		target = b.Path
	}
	cur, err := inspectResolvConf(target)
	if err != nil {
		return err
	}
	log := opts.Log.WithField("file", target).WithField("backup", path)
	switch {
	case !cur.shunts:
		log.Warn("a run of shunt that did not stop cleanly left a backup of resolv.conf, but the file changed since shunt wrote it: keeping the file as it is and dropping the backup")
	case perr != nil:
		return fmt.Errorf("%s is still shunt's, from a run that did not stop cleanly, and its backup %s is damaged (%v): restore the file by hand", target, path, perr)
	default:
		if err := restoreFile(b); err != nil {
			return fmt.Errorf("restore %s from %s: %w", target, path, err)
		}
		log.Warn("restored resolv.conf from the backup of a run of shunt that did not stop cleanly")
	}
	return removeSynced(path)
}

// resolvConfState is resolv.conf as shunt found it.
type resolvConfState struct {
	backup   fileBackup // what restores it
	target   string     // a link's target as an absolute path
	rc       resolvConf // the text, through a link
	shunts   bool       // a regular file with shunt's marker
	ownerWhy string     // set by owner
}

func inspectResolvConf(path string) (resolvConfState, error) {
	st := resolvConfState{backup: fileBackup{Path: path}}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		st.backup.Missing = true
		return st, nil
	case err != nil:
		return st, fmt.Errorf("resolv.conf: %w", err)
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(path)
		if err != nil {
			return st, fmt.Errorf("resolv.conf: %w", err)
		}
		st.backup.Symlink = target
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		st.target = filepath.Clean(target)
		// A dangling link reads as an empty file, as the resolver
		// reads it.
		data, _ := os.ReadFile(path)
		st.rc = parseResolvConf(data)
		return st, nil
	case !fi.Mode().IsRegular():
		return st, fmt.Errorf("resolv.conf %s is not a file (%v)", path, fi.Mode().Type())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("resolv.conf: %w", err)
	}
	st.backup.Mode = fi.Mode().Perm()
	st.backup.UID, st.backup.GID = fileOwner(fi)
	st.backup.Data = data
	st.rc = parseResolvConf(data)
	st.shunts = isShuntResolvConf(data)
	return st, nil
}

// symlinkIntoResolved: resolv.conf is one of systemd-resolved's files.
func (s resolvConfState) symlinkIntoResolved() bool {
	return strings.HasPrefix(s.target, "/run/systemd/resolve/")
}

// pointsAtResolved: resolv.conf sends names to systemd-resolved, by a link
// to its files or by naming only its stub resolver.
func (s resolvConfState) pointsAtResolved() bool {
	if s.symlinkIntoResolved() {
		return true
	}
	if len(s.rc.Nameservers) == 0 {
		return false
	}
	for _, a := range s.rc.Nameservers {
		if a.String() != "127.0.0.53" && a.String() != "127.0.0.54" {
			return false
		}
	}
	return true
}

// owner names the program that manages resolv.conf and would rewrite
// it, when it is not systemd-resolved: resolvconf (Debian's or
// openresolv) or NetworkManager; ownerWhy says how it shows.
func (s *resolvConfState) owner() string {
	header := strings.ToLower(s.rc.Header)
	switch {
	case strings.HasPrefix(s.target, "/run/resolvconf/") || strings.HasPrefix(s.target, "/etc/resolvconf/"):
		s.ownerWhy = "the file links to " + s.target
		return "resolvconf"
	case strings.Contains(header, "generated by resolvconf"):
		s.ownerWhy = `its header says "generated by resolvconf"`
		return "resolvconf"
	case strings.HasPrefix(s.target, "/run/NetworkManager/") || strings.HasPrefix(s.target, "/var/run/NetworkManager/"):
		s.ownerWhy = "the file links to " + s.target
		return "NetworkManager"
	case strings.Contains(header, "generated by networkmanager"):
		s.ownerWhy = `its header says "Generated by NetworkManager"`
		return "NetworkManager"
	}
	return ""
}
