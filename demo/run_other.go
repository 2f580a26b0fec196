//go:build !linux

package demo

import (
	"fmt"
	"io"
)

// Options are shunt demo's.
type Options struct {
	Keep           bool
	Gateway        string
	Exe            string
	Stdout, Stderr io.Writer
}

// Run says that the demo needs Linux (network namespaces).
func Run(o Options) int {
	fmt.Fprintln(o.Stderr, "shunt demo needs Linux: it builds its world in network namespaces.")
	return 1
}

// Down has nothing to remove off Linux.
func Down(id string, stdout io.Writer) (int, error) { return 0, nil }
