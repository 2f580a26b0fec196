//go:build !unix

package engine

import "errors"

// fileLimit: Windows has no descriptor limit of this kind.
func fileLimit() (soft, hard uint64, err error) {
	return 0, 0, errors.New("no descriptor limit here")
}

// openFiles: nothing to count against.
func openFiles() (int, error) { return 0, errors.New("no descriptor limit here") }
