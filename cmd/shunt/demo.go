package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/shunt-dev/shunt/demo"
)

const demoUsage = "usage: shunt demo [--keep] [--gateway auto|sshd|builtin]\n       shunt demo --down [ID]"

// cmdDemo runs shunt demo: shunt against an SSH gateway in a small world
// of network namespaces, explained step by step.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shunt demo", flag.ContinueOnError)
	keep := fs.Bool("keep", false, "leave the demo world running and print commands to try by hand")
	down := fs.Bool("down", false, "remove kept demo worlds (all, or the one whose ID follows) and exit")
	gw := fs.String("gateway", "auto", "the SSH server: `auto` (OpenSSH's sshd when on PATH, else the built-in shunt gateway), sshd or builtin")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return usageExit(err, stderr, demoUsage)
	}
	if *down {
		if fs.NArg() > 1 || *keep {
			return usageExit(nil, stderr, demoUsage)
		}
		if os.Geteuid() != 0 {
			fmt.Fprintln(stderr, "shunt demo --down needs root: run it with sudo.")
			return 1
		}
		n, err := demo.Down(fs.Arg(0), stdout)
		if err != nil {
			fmt.Fprintf(stderr, "shunt demo --down: %v\n", err)
			return 1
		}
		if n == 0 {
			fmt.Fprintln(stdout, "no demo world to remove")
		}
		return 0
	}
	if fs.NArg() > 0 {
		return usageExit(nil, stderr, demoUsage)
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "shunt demo: finding its own binary: %v\n", err)
		return 1
	}
	return demo.Run(demo.Options{Keep: *keep, Gateway: *gw, Exe: exe, Stdout: stdout, Stderr: stderr})
}
