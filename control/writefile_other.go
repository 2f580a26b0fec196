//go:build !unix

package control

import (
	"io/fs"
	"os"
)

// keepOwner: files have no Unix owner here.
func keepOwner(*os.File, fs.FileInfo) error { return nil }

// syncDir: directories cannot be synced here; the rename is as durable as
// the file system makes it.
func syncDir(string) error { return nil }
