//go:build unix

package engine

import "golang.org/x/sys/unix"

// fileLimit is RLIMIT_NOFILE.
func fileLimit() (soft, hard uint64, err error) {
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, err
	}
	return uint64(l.Cur), uint64(l.Max), nil
}
