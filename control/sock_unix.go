//go:build !windows

package control

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// daemonUID is the daemon's effective uid, which may use the socket.
func daemonUID() uint32 { return uint32(os.Geteuid()) }

// groupSupported: control.group gives the socket its group here.
func groupSupported() error { return nil }

// prepareSocketDir makes the socket's directory (0755) when missing: the
// socket's own mode decides who connects.
func prepareSocketDir(path string) error {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("control socket: making its directory: %w", err)
		}
		// Whatever the umask: group members must reach the socket.
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
	return nil
}

// restrictSocket gives the socket mode 0660 and a's group: root, the
// daemon's user and the group's members may connect (and the peer check
// lets in the same).
func restrictSocket(path string, a access) error {
	if err := os.Chmod(path, 0o660); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if a.group != "" {
		if err := os.Chown(path, -1, int(a.gid)); err != nil {
			return fmt.Errorf("control socket %s: giving it to group %s (control.group): %w (shunt must run as root or as a member of the group)", path, a.group, err)
		}
	}
	return nil
}

// connRefused: nobody listens on the socket (a dead shunt's).
func connRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
