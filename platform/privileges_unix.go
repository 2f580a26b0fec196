//go:build !windows

package platform

import (
	"errors"
	"os"
	"runtime"
)

// CheckPrivileges says whether this process may create the TUN device
// and change the routes: root on Linux (CAP_NET_ADMIN, which the daemon
// later narrows to) and on macOS.
func CheckPrivileges() error {
	if os.Geteuid() == 0 {
		return nil
	}
	if runtime.GOOS == "linux" {
		return errors.New("shunt up needs root (CAP_NET_ADMIN) to create the TUN device and its routes: run it with sudo")
	}
	return errors.New("shunt up needs root to create the utun device and its routes: run it with sudo")
}
