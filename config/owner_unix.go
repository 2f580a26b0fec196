//go:build unix

package config

import (
	"io/fs"
	"syscall"
)

// fileOwner is the uid that owns the file, when the platform says.
func fileOwner(st fs.FileInfo) (uint32, bool) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Uid, true
	}
	return 0, false
}
