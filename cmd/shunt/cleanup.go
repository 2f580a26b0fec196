package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/platform"
)

// cmdCleanup removes what shunt leaves in the host's networking while it
// is not running: the kill switch (policy rules, unreachable routes), and
// whatever a crash left (rules, routes, the resolver's configuration). It
// says what it removed.
func cmdCleanup(args []string, stdout, stderr io.Writer) int {
	cf, rest, err := parseConfigFlags("cleanup", args, stdout, stderr, nil)
	if err != nil || len(rest) != 0 {
		return usageExit(err, stderr, "usage: shunt cleanup [--config FILE]...")
	}
	if platform.CheckPrivileges() != nil {
		fmt.Fprintln(stderr, "shunt cleanup: needs root (CAP_NET_ADMIN on Linux; an elevated administrator on Windows) to change routes and the resolver's settings: run it with sudo")
		return 1
	}
	// The configuration gives the state directory (the resolver's backup);
	// one that does not load still leaves the routes to clean.
	stateDir := config.DefaultStateDir
	if cfg, err := cf.load(); err != nil {
		fmt.Fprintf(stderr, "shunt cleanup: the configuration does not load, so the resolver's backup is looked for in %s: %v\n", stateDir, err)
	} else if cfg.StateDir != "" {
		stateDir = cfg.StateDir
	}
	removed, err := platform.CleanUp(platform.DefaultConfig("", nil))
	for _, r := range removed {
		fmt.Fprintf(stdout, "removed %s\n", r)
	}
	if err != nil {
		fmt.Fprintln(stderr, "shunt cleanup:", err)
		return 1
	}
	log := logrus.New()
	log.Out = stderr
	if err := platform.CleanUpDNS(platform.DNSOptions{StateDir: stateDir, Log: log}); err != nil {
		fmt.Fprintln(stderr, "shunt cleanup:", err)
		return 1
	}
	if len(removed) == 0 {
		if runtime.GOOS == "linux" {
			fmt.Fprintln(stdout, "nothing to remove: no policy rule selects shunt's routing table, and the table is empty")
		} else {
			// macOS's and Windows's routes go with the device.
			fmt.Fprintln(stdout, "nothing to remove: no route or resolver setting of shunt's is left")
		}
		return 0
	}
	fmt.Fprintln(stdout, "normal routing is back: the captured destinations take the host's routes again")
	return 0
}
