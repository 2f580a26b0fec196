//go:build !unix

package engine

// pathOwner: files have no uid here (and capabilities are Linux's).
func pathOwner(string) (uint32, bool) { return 0, false }
