//go:build unix

package broker

import (
	"os"
	"syscall"
)

// noFollow opens a path without following a last symbolic link.
const noFollow = syscall.O_NOFOLLOW

// ownedBy reports whether path belongs to uid.
func ownedBy(path string, uid int) bool {
	fi, err := os.Lstat(path)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}
