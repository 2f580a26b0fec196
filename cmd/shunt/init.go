package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/starter"
)

const initUsage = "usage: shunt init USER@HOST --capture CIDR [--ports LIST] [--profile NAME] [--identity FILE] [--port N] [--output FILE] [--force] [--no-check]"

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// cmdInit writes a starter configuration.
// Not yet done: the interactive questions, the login/host-key check and --accept.
func cmdInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shunt init", flag.ContinueOnError)
	var o starter.Options
	var capture, ports listFlag
	fs.Var(&capture, "capture", "network whose traffic goes through the gateway (repeatable or comma list), e.g. 10.1.0.0/16")
	fs.Var(&ports, "ports", "only these ports, e.g. 25,143,993-995 (default every port)")
	fs.StringVar(&o.Profile, "profile", "gateway", "profile name")
	fs.StringVar(&o.Identity, "identity", "", "private key file for the login")
	fs.IntVar(&o.Port, "port", 0, "SSH port of the gateway (default 22)")
	output := fs.String("output", "", "file to write (default where shunt reads it)")
	force := fs.Bool("force", false, "replace an existing file")
	noCheck := fs.Bool("no-check", false, "do not run shunt check on the result")
	// USER@HOST may come before or after the flags.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	err := parseFlags(fs, args, stdout, stderr)
	if err == nil && target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	} else if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("shunt init: unexpected %q", fs.Arg(0))
	}
	if err != nil || target == "" || len(capture) == 0 {
		if err == nil {
			err = fmt.Errorf("shunt init: give USER@HOST and --capture")
		}
		return usageExit(err, stderr, initUsage)
	}
	if u, h, ok := strings.Cut(target, "@"); ok {
		o.User, o.Host = u, h
	} else {
		o.Host = target
	}
	o.Capture, o.Ports = capture, ports
	data, err := starter.Render(o)
	if err != nil {
		fmt.Fprintln(stderr, "shunt init:", err)
		return 2
	}
	path, mode := *output, os.FileMode(0o600)
	if path == "" {
		if os.Geteuid() == 0 {
			path, mode = config.GlobalFile, 0o644
		} else {
			path = config.UserFile()
		}
	}
	if err := starter.Write(path, data, mode, *force); err != nil {
		fmt.Fprintln(stderr, "shunt init:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s (mode %04o)\n", path, mode)
	if !*noCheck {
		if rc := cmdCheck([]string{"--config", path}, stdout, stderr); rc != 0 {
			return rc
		}
	}
	fmt.Fprintf(stdout, "next: sudo shunt up --config %s\n", path)
	return 0
}
