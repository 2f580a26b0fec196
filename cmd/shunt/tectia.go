package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shunt-dev/shunt/tectia"
)

func cmdImportTectia(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shunt import-tectia", flag.ContinueOnError)
	best := fs.Bool("best-effort", false, "write what converts and exit 0 even when some constructs do not")
	if err := parseFlags(fs, args, stdout, stderr); err != nil || fs.NArg() != 1 {
		return usageExit(err, stderr, "usage: shunt import-tectia [--best-effort] ssh-broker-config.xml > shunt.yaml")
	}
	name := fs.Arg(0)
	f, err := os.Open(name)
	if err != nil {
		fmt.Fprintln(stderr, "shunt import-tectia:", err)
		return 1
	}
	defer f.Close()
	opts := tectia.Options{BestEffort: *best}
	res, err := tectia.Convert(f, name, opts)
	if err != nil {
		fmt.Fprintln(stderr, "shunt import-tectia:", err)
		return 1
	}
	// Notes first: what converted to what shunt does instead (also in
	// the YAML's header, but stdout is usually a file).
	for _, n := range res.Notes {
		fmt.Fprintln(stderr, n)
	}
	for _, p := range res.Problems {
		fmt.Fprintln(stderr, p)
	}
	if res.Failed(opts) {
		fmt.Fprintf(stderr, "%d constructs could not be converted; nothing written (use --best-effort to write the rest)\n", len(res.Problems))
		return 1
	}
	stdout.Write(res.YAML)
	return 0
}
