package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The resolv.conf manager: shunt's server becomes the only nameserver.
// resolv.conf cannot route by domain, so every name comes to shunt, which
// forwards those it does not answer to the upstreams read from the
// original file.
//
// Before the first change the original is saved to the state directory
// (its exact bytes, mode and owner, or the target of a symbolic link, or
// that there was none), synced to disk; Close puts it back and removes the
// backup, and after a crash CleanUpDNS does at the next start. A normal
// file is replaced atomically (a temporary file in the same directory,
// renamed over it). A bind-mounted file (a container's, or the one that
// `ip netns exec` mounts from /etc/netns/NAME/) cannot be renamed over
// (EBUSY) nor replaced without losing the mount, so it is rewritten in
// place.

type fileDNS struct {
	path   string
	backup string // the backup file's path
	orig   resolvConfState
	log    logrus.FieldLogger

	mu     sync.Mutex
	saved  bool // the backup is on disk and the file may be shunt's
	closed bool
	told   bool // the user was told that every name comes to shunt
}

func newFileDNS(opts DNSOptions, cur resolvConfState) (*fileDNS, error) {
	backup, err := opts.backupPath()
	if err != nil {
		return nil, fmt.Errorf("dns.mode resolv.conf: %w", err)
	}
	if _, err := os.Lstat(backup); err == nil {
		return nil, fmt.Errorf("%s holds a backup of resolv.conf from an earlier run: CleanUpDNS restores it, and must run before NewOSDNS", backup)
	}
	return &fileDNS{path: opts.ResolvConf, backup: backup, orig: cur, log: opts.Log.WithField("file", opts.ResolvConf)}, nil
}

func (f *fileDNS) Mode() string { return DNSModeFile }

func (f *fileDNS) Upstreams() []netip.AddrPort { return f.orig.rc.upstreams() }

func (f *fileDNS) Set(cfg DNSConfig) error {
	if err := checkDNSConfig(cfg); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("resolv.conf manager is closed")
	}
	first := !f.saved
	if first {
		if err := os.MkdirAll(filepath.Dir(f.backup), 0o700); err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		if err := writeFileSynced(f.backup, f.orig.backup.marshal(), 0o600); err != nil {
			return fmt.Errorf("save the backup of %s: %w", f.path, err)
		}
		f.saved = true
	}
	mode, uid, gid := os.FileMode(0o644), os.Geteuid(), os.Getegid()
	if b := f.orig.backup; !b.Missing && b.Symlink == "" {
		mode, uid, gid = b.Mode, b.UID, b.GID
	}
	data := shuntResolvConf(f.orig.rc, cfg.Nameservers, f.backup)
	if err := replaceFile(f.path, data, mode, uid, gid); err != nil {
		err = fmt.Errorf("write %s: %w", f.path, err)
		if first {
			// Put back what a failed write may have damaged (an
			// in-place write cut short), and keep no backup of a
			// change that did not happen.
			if cur, ierr := inspectResolvConf(f.path); ierr != nil || !cur.backup.same(f.orig.backup) {
				if rerr := restoreFile(f.orig.backup); rerr != nil {
					return fmt.Errorf("%w; restoring the original failed too (%v), its backup stays in %s", err, rerr, f.backup)
				}
			}
			removeSynced(f.backup)
			f.saved = false
		}
		return err
	}
	if len(cfg.Domains) > 0 && !f.told {
		f.told = true
		f.log.Info("DNS: resolv.conf cannot route by domain: every name now comes to shunt, which forwards those outside its domains to the system's resolvers")
	}
	return nil
}

func (f *fileDNS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if !f.saved {
		return nil
	}
	cur, err := inspectResolvConf(f.path)
	if err != nil {
		return fmt.Errorf("%w (the backup stays in %s)", err, f.backup)
	}
	if cur.shunts {
		if err := restoreFile(f.orig.backup); err != nil {
			return fmt.Errorf("restore %s: %w (the backup stays in %s)", f.path, err, f.backup)
		}
	} else {
		f.log.Warn("resolv.conf was rewritten by someone else while shunt ran: keeping their file")
	}
	f.saved = false
	return removeSynced(f.backup)
}

// restoreFile puts back the state b saved.
func restoreFile(b fileBackup) error {
	switch {
	case b.Missing:
		if err := os.Remove(b.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return syncDir(filepath.Dir(b.Path))
	case b.Symlink != "":
		return replaceWithSymlink(b.Path, b.Symlink)
	}
	return replaceFile(b.Path, b.Data, b.Mode, b.UID, b.GID)
}

// replaceFile makes path hold data with the mode and owner given: through
// a temporary file renamed over it, so that readers see the old file or
// the new one, never a part; a mount point (a bind-mounted file) is
// rewritten in place instead.
func replaceFile(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	if isMountRoot(path) {
		return writeInPlace(path, data, mode)
	}
	return renameOver(path, data, mode, uid, gid)
}

// renameOver writes a temporary file beside path and renames it over path;
// a rename refused with EBUSY (a mount point) falls back to writeInPlace.
func renameOver(path string, data []byte, mode os.FileMode, uid, gid int) (err error) {
	dir := filepath.Dir(path)
	t, err := os.CreateTemp(dir, "."+filepath.Base(path)+".shunt-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			t.Close()
			os.Remove(t.Name())
		}
	}()
	if _, err := t.Write(data); err != nil {
		return err
	}
	if err := t.Chmod(mode); err != nil {
		return err
	}
	if err := t.Chown(uid, gid); err != nil && !(errors.Is(err, os.ErrPermission) && os.Geteuid() != 0) {
		return err
	}
	if err := t.Sync(); err != nil {
		return err
	}
	if err := t.Close(); err != nil {
		return err
	}
	if err := os.Rename(t.Name(), path); err != nil {
		if !errors.Is(err, unix.EBUSY) {
			return err
		}
		// A mount point that statx did not show (an older kernel).
		os.Remove(t.Name())
		return writeInPlace(path, data, mode)
	}
	return syncDir(dir)
}

// isMountRoot reports whether path itself (not a link's target) is a
// mount point, as a bind-mounted file is. Kernels before 5.8 do not say;
// there the rename's EBUSY tells.
func isMountRoot(path string) bool {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &stx); err != nil {
		return false
	}
	return stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0
}

// writeInPlace truncates and rewrites path (a bind-mounted file): the
// mount stays, and so does the owner.
func writeInPlace(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// replaceWithSymlink makes path a symbolic link to target, atomically.
func replaceWithSymlink(path, target string) error {
	dir := filepath.Dir(path)
	t, err := os.CreateTemp(dir, "."+filepath.Base(path)+".shunt-*")
	if err != nil {
		return err
	}
	tmp := t.Name()
	t.Close()
	if err := os.Remove(tmp); err != nil {
		return err
	}
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// writeFileSynced writes path atomically and makes it durable: the
// backup must be on disk before the file it saves changes.
func writeFileSynced(path string, data []byte, mode os.FileMode) error {
	return replaceFile(path, data, mode, os.Geteuid(), os.Getegid())
}

// removeSynced removes path (gone already is fine) and syncs its
// directory.
func removeSynced(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func fileOwner(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return os.Geteuid(), os.Getegid()
}
