package control

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// daemonUID stands for the daemon's user: Windows has no uids, and a peer
// the socket admits stands as root does (peer_windows.go).
func daemonUID() uint32 { return 0 }

// groupSupported: the socket's directory admits SYSTEM and the
// Administrators only.
func groupSupported() error {
	return errors.New("control.group is not supported on Windows: the control socket serves SYSTEM and elevated members of Administrators only; remove control.group")
}

// prepareSocketDir makes the socket's directory if need be, and gives it
// socketDirSDDL (sockdir.go) before the socket is made in it.
func prepareSocketDir(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("control socket: making its directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	// A link or junction would hand the DACL to its target.
	if !fi.IsDir() || fi.Mode()&(fs.ModeSymlink|fs.ModeIrregular) != 0 {
		return fmt.Errorf("control socket: its directory %s is not a plain directory (a link or a junction?): set control.socket to a path in a new directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err := checkSocketDir(dir, filepath.Base(path), names); err != nil {
		return err
	}
	sd, err := windows.SecurityDescriptorFromString(socketDirSDDL)
	if err != nil {
		return fmt.Errorf("control socket: security descriptor %s: %w", socketDirSDDL, err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	err = windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("control socket: restricting its directory %s to SYSTEM and Administrators (SetNamedSecurityInfo): %w (shunt must run elevated, or as the service)", dir, err)
	}
	return nil
}

// restrictSocket has nothing to do: the socket inherits its directory's
// DACL.
func restrictSocket(string, access) error { return nil }

// connRefused: nobody listens on the socket (a dead shunt's).
func connRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }
