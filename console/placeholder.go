package console

import (
	"embed"
	"io/fs"
)

//go:embed placeholder.html
var placeholder embed.FS

// Placeholder are pages that say the console's own are not built in: for
// a build without package console/web.
var Placeholder fs.FS = placeholderFS{}

type placeholderFS struct{}

func (placeholderFS) Open(name string) (fs.File, error) {
	if name == "index.html" {
		name = "placeholder.html"
	} else if name == "placeholder.html" {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return placeholder.Open(name)
}
