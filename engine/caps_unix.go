//go:build unix

package engine

import (
	"os"
	"path/filepath"
	"syscall"
)

// pathOwner is capFacts.owner on the real file system.
func pathOwner(path string) (uint32, bool) {
	for p := filepath.Clean(path); ; {
		if fi, err := os.Lstat(p); err == nil {
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return 0, false
			}
			return st.Uid, true
		}
		up := filepath.Dir(p)
		if up == p {
			return 0, false
		}
		p = up
	}
}
