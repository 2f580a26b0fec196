//go:build unix

package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// fileLimit is RLIMIT_NOFILE.
func fileLimit() (soft, hard uint64, err error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	return uint64(l.Cur), uint64(l.Max), nil
}

// openFiles counts the descriptors open in this process (/dev/fd is the
// process's own on Linux and macOS; reading it takes one, not counted).
func openFiles() (int, error) {
	entries, err := os.ReadDir("/dev/fd")
	if err != nil {
		return 0, err
	}
	return len(entries) - 1, nil
}
