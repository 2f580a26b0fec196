package main

// The command tree: cobra gives shunt its --help, shell completion and man
// pages. Each command still parses its own flags with the standard flag
// package (DisableFlagParsing), so every flag spelling that worked before
// (-config, --config, -c) still works and the errors read as before; the
// tree learns the flags from the command itself (flagCapture), so that
// completion offers them and the man pages list them.
//
// To turn a new stdlib-flag command into a cobra command, write
//
//	func cmdX(args []string, stdout, stderr io.Writer) int
//
// as today (parseFlags/usageExit), and add to commands() one entry:
//
//	{Use: "x [flags] ARG", Short: "...", Long: "...", Example: "  shunt x ...", Run: cmdX}
//
// -h/--help then prints the Long text and the examples, followed by the
// command's own flag list (cmdX called with -h).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/demo"
)

// command is one subcommand: its help, and the function that runs it.
type command struct {
	Use, Short, Long, Example string
	Run                       func(args []string, stdout, stderr io.Writer) int
	// Complete gives the positional arguments' completions, if any.
	Complete func(args []string, toComplete string) []string
	// Hidden keeps the command out of help, completion and man pages
	// (a piece of another command, run by shunt itself).
	Hidden bool
}

// flagCapture, given to a command as its stdout, asks the command for its
// flags instead of running it: parseFlags, which every command calls
// before it does anything, hands it the command's flag set and returns as
// for -h. The tree learns each command's flags this way, from the code
// that parses them, for completion and the man pages.
type flagCapture struct {
	io.Writer
	fs *flag.FlagSet
}

// commandFlags is c's flag set (nil for a command without one).
func commandFlags(c command) *flag.FlagSet {
	fc := &flagCapture{Writer: io.Discard}
	c.Run([]string{"-h"}, fc, io.Discard)
	return fc.fs
}

// cobraFlags tells cobra about the flags of fs, which cobra does not parse
// (DisableFlagParsing): a one-letter flag with the same value as a long
// one is its shorthand (-c for --config). Defaults under the home
// directory read "~/...": the man pages are made on one machine and read
// on others.
func cobraFlags(fs *flag.FlagSet, to *pflag.FlagSet) {
	home, _ := os.UserHomeDir()
	short := map[flag.Value]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 && comparableValue(f.Value) {
			short[f.Value] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		pf := &pflag.Flag{Name: f.Name, Usage: usage, DefValue: f.DefValue, Value: goFlagValue{f.Value, name}}
		if home != "" && strings.HasPrefix(f.DefValue, home+"/") {
			pf.DefValue = "~" + strings.TrimPrefix(f.DefValue, home)
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			pf.NoOptDefVal = "true"
		}
		switch {
		case !comparableValue(f.Value):
		case len(f.Name) == 1:
			for _, g := range flagsOf(fs) {
				if len(g.Name) > 1 && comparableValue(g.Value) && g.Value == f.Value {
					return // the shorthand of g
				}
			}
		default:
			pf.Shorthand = short[f.Value]
		}
		to.AddFlag(pf)
	})
}

// comparableValue reports whether v can be compared (and be a map key): a
// value of flag.Func's kind cannot.
func comparableValue(v flag.Value) bool { return reflect.TypeOf(v).Comparable() }

func flagsOf(fs *flag.FlagSet) []*flag.Flag {
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// goFlagValue is a standard flag's value as pflag sees it; typ is the
// value's name in the usage ("file", "path"; "bool", "string"... when
// the usage names none).
type goFlagValue struct {
	flag.Value
	typ string
}

func (v goFlagValue) Type() string {
	if v.typ == "" {
		return "bool"
	}
	return v.typ
}

// takesFile reports whether the flag's value is a file or directory
// name, completed as one.
func takesFile(f *flag.Flag) bool {
	name, _ := flag.UnquoteUsage(f)
	return name == "file" || name == "path" || name == "dir"
}

// exitCode carries a command's exit code out of cobra's Execute.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func commands() []command {
	ctlCmd := func(name string) func([]string, io.Writer, io.Writer) int {
		return func(args []string, stdout, stderr io.Writer) int { return runCtl(name, args, stdout, stderr) }
	}
	return []command{
		{Use: "up [--config FILE]...", Short: "capture and tunnel until interrupted (needs root)",
			Long: `Capture the traffic the configuration's rules choose, through a TUN device,
and carry each flow over SSH to its profile's gateway, until interrupted
(SIGINT or SIGTERM). Prompts for passwords and host keys are asked on the
terminal. Needs root (or CAP_NET_ADMIN).` + configHelp,
			Example: `  sudo shunt up
  sudo shunt up --config ./office.yaml
  sudo shunt up --global "" --user-config "" -c examples/mail.yaml`,
			Run: cmdUp},
		{Use: "daemon [--config FILE]...", Short: "the same as up, without a terminal: as a service",
			Long: `Run as up does, without a terminal: as a service (see dist/systemd
shunt.service). It notifies systemd when ready, and prompts are answered
with "shunt auth" over the control socket. On Windows, started by the
service control manager (sc.exe create shunt binPath= "PATH\shunt.exe
daemon" start= auto), it runs as the service shunt: Stop stops it, and it
logs to the Application event log.` + configHelp,
			Example: `  shunt daemon
  shunt daemon --config /etc/shunt/site.yaml`,
			Run: cmdDaemon},
		{Use: "check [--config FILE]...", Short: "validate the configuration",
			Long: `Read and validate the configuration, print notes and problems, and exit
non-zero when it cannot be used (a problem that makes a profile unusable
fails the check).` + configHelp,
			Example: `  shunt check
  shunt check --config ./office.yaml
  shunt check --global "" --user-config "" -c examples/mail.yaml`,
			Run: cmdCheck},
		{Use: "explain [flags] DEST[:PORT]", Short: "show which rule a flow matches, and why",
			Long: `Show which rule and profile a flow to DEST (a name or an address, with an
optional port) would take under the configuration, and why.` + configHelp,
			Example: `  shunt explain mail.example.com:993
  shunt explain -c ./office.yaml 10.1.2.3:22
  shunt explain --from 192.168.50.7 10.1.2.3:22`,
			Run: cmdExplain},
		{Use: "import-tectia [--best-effort] ssh-broker-config.xml", Short: "convert a Tectia configuration to YAML",
			Long: `Convert a Tectia SSH broker configuration (ssh-broker-config.xml) to a
shunt YAML configuration on stdout. --best-effort converts what it can and
notes the rest instead of failing.`,
			Example: `  shunt import-tectia ssh-broker-config.xml > shunt.yaml
  shunt import-tectia --best-effort ssh-broker-config.xml`,
			Run: cmdImportTectia},
		{Use: "cleanup [--config FILE]...", Short: "remove the kill switch and what a crashed shunt left (needs root)",
			Long: `Remove the kill switch, routes and TUN device that a shunt which crashed or
was killed left behind. Needs root.` + configHelp,
			Example: `  sudo shunt cleanup
  sudo shunt cleanup --config ./office.yaml`,
			Run: cmdCleanup},
		{Use: "version", Short: "print the version",
			Long:    `Print the version, the Go version and the platform shunt was built for.`,
			Example: `  shunt version`,
			Run:     cmdVersion},
		{Use: "status [--watch] [--json]", Short: "show the profiles, prompts and flows of the running shunt",
			Long:    `Show the running shunt's profiles, pending prompts and flows. --watch redraws it as it changes; --json prints it as JSON.` + socketHelp,
			Example: "  shunt status\n  shunt status --watch\n  shunt status --json --socket /run/shunt/shunt.sock",
			Run:     ctlCmd("status")},
		{Use: "flows [--follow] [--json]", Short: "list the running shunt's flows",
			Long:    `List the running shunt's flows; --follow streams them as they open and close.` + socketHelp,
			Example: "  shunt flows\n  shunt flows --follow\n  shunt flows --json",
			Run:     ctlCmd("flows")},
		{Use: "reload [--reset-removed] [--json]", Short: "have the running shunt read its configuration again",
			Long:    `Have the running shunt read its configuration again, as SIGHUP does, and say what changed.` + socketHelp,
			Example: "  shunt reload\n  shunt reload --reset-removed",
			Run:     ctlCmd("reload")},
		{Use: "down [--no-wait] [--json]", Short: "have the running shunt stop, and wait until it has",
			Long:    `Have the running shunt stop, as SIGTERM does, and wait until it has (--no-wait: do not wait).` + socketHelp,
			Example: "  shunt down\n  shunt down --no-wait",
			Run:     ctlCmd("down")},
		{Use: "connect PROFILE [--json]", Short: "connect a profile now",
			Long:     `Have the running shunt connect PROFILE's SSH connection now, instead of at its first flow.` + socketHelp,
			Example:  "  shunt connect office\n  shunt connect office --json",
			Run:      ctlCmd("connect"),
			Complete: completeProfiles},
		{Use: "disconnect PROFILE [--json]", Short: "close a profile's SSH connections",
			Long:     `Have the running shunt close PROFILE's SSH connections (and so its flows).` + socketHelp,
			Example:  "  shunt disconnect office",
			Run:      ctlCmd("disconnect"),
			Complete: completeProfiles},
		{Use: "close FLOW-ID [--json]", Short: "reset a flow",
			Long:     `Have the running shunt reset the flow FLOW-ID (as "shunt flows" lists them).` + socketHelp,
			Example:  "  shunt flows\n  shunt close 42",
			Run:      ctlCmd("close"),
			Complete: completeFlows},
		{Use: "auth [--wait] [PROFILE]", Short: "answer a pending password, passphrase or host-key prompt",
			Long: `Answer the running shunt's pending password, passphrase or host-key prompt
(of PROFILE, if given): from the terminal without echo, or a line of stdin.
--wait waits for a prompt to appear.` + socketHelp,
			Example:  "  shunt auth\n  shunt auth --wait office\n  echo \"$PASS\" | shunt auth office",
			Run:      ctlCmd("auth"),
			Complete: completeProfiles},
		{Use: "console [--no-browser] [--json]", Short: "print the web console's URL, and open a browser on it",
			Long: `Print the URL of the running shunt's web console (console.listen) with its
login token, which shunt writes anew at each start, readable by its own user
only; open a browser on it when there is a display ($DISPLAY or
$WAYLAND_DISPLAY) and xdg-open (--no-browser: never). The URL logs the
browser in: keep it to yourself.` + socketHelp,
			Example: "  shunt console\n  shunt console --no-browser\n  sudo shunt console   # a shunt of root's",
			Run:     ctlCmd("console")},
		{Use: "init USER@HOST --capture CIDR [--ports LIST] [flags]", Short: "write a starter configuration, once its login works",
			Long: `Write a commented starter configuration: one profile for the SSH gateway
USER@HOST and one rule sending the --capture networks (only the --ports,
if given) through it. A HOST that a Host block of ~/.ssh/config names
becomes a profile with ssh_config: HOST, as ssh would use it.

Before writing, it logs in as shunt up would (agent, keys, passphrase and
password prompts) and shows the server's host key fingerprint: known, or,
when known_hosts lacks it, recorded with --accept or when you say yes at
the terminal; a changed key is refused. A refused key or login writes
nothing and says why. Without USER@HOST or --capture, at a terminal, it
asks for them.

As root it writes /etc/shunt/shunt.yaml (mode 0644), otherwise the user's
~/.config/shunt/shunt.yaml (mode 0600), or --output FILE. An existing file
is never replaced without --force. It then runs shunt check on the file
and prints the next step. --no-check writes the file without logging in
or checking.`,
			Example: `  shunt init alice@gw.example.com --capture 10.1.0.0/16
  shunt init office --capture 10.1.0.0/16,10.2.0.0/16 --ports 25,143,993-995 --output ./shunt.yaml
  sudo shunt init alice@gw.example.com --capture 10.1.0.0/16 --accept
  shunt init`,
			Run: cmdInit},
		{Use: "gateway [flags]", Short: "run an SSH server that only forwards TCP to permitted destinations",
			Long: `Run a small SSH server for the far end of a tunnel. It offers no shell and
no remote forwarding; it only opens TCP connections (direct-tcpip, what
shunt, ssh -W, -L and -J use) to the destinations in its permit list
(NET[:PORTS]; an empty list permits nothing). Keys come from an OpenSSH
authorized_keys file, read again at each login; permitopen= and from=
narrow a key further, and a key with an option the gateway cannot honour
(command=, tunnel=, environment=, principals=, cert-authority) is refused.
The host key is made on first start (ed25519) and kept. max_startups,
max_auth_tries and login_grace_time work as in sshd. The configuration is
/etc/shunt/gateway.yaml when it exists, or --config; flags replace its
values.`,
			Example: `  shunt gateway --host-key /etc/shunt/gw_host --authorized-keys /etc/shunt/gw_keys --permit 10.0.0.0/8:22,443
  shunt gateway --config /etc/shunt/gateway.yaml
  shunt gateway --listen 192.0.2.1:2222 --permit 192.0.2.7 --permit '[2001:db8::/32]:443' --host-key k --authorized-keys ak`,
			Run: cmdGateway},
		{Use: "demo [--keep]", Short: "see shunt work in a small world of network namespaces (needs root)",
			Long: `Build a small world in network namespaces on this machine (a client, an
SSH gateway and an internal host with a web page and a mail-like service),
run shunt in the client against the gateway, then a web request, a
download, the mail service's banner and a connection a rule blocks. It
shows shunt status while they run, explains which rule and profile each
took, and removes everything at the end, also on Ctrl-C. The gateway is
OpenSSH's sshd when it is on PATH, else the built-in shunt gateway
(--gateway auto|sshd|builtin). --keep leaves the world running and prints
commands to try; --down [ID] removes kept worlds. Needs root, nothing
else.`,
			Example: `  sudo shunt demo
  sudo shunt demo --keep
  sudo shunt demo --down 3fa2c1
  sudo shunt demo --gateway builtin`,
			Run: cmdDemo},
		{Use: "demo-node", Short: "a piece of shunt demo, inside one of its namespaces", Hidden: true,
			Long: "A piece of shunt demo, run by the demo inside one of its namespaces.",
			Run:  func(args []string, _, stderr io.Writer) int { return demo.Node(args, stderr) }},
	}
}

const configHelp = `

The configuration is /etc/shunt/shunt.yaml (--global), then the user's
~/.config/shunt/shunt.yaml (--user-config), then each --config (-c) file,
merged.`

const socketHelp = `

It finds the running shunt's control socket by --socket PATH, else
$SHUNT_SOCKET, else /run/shunt/shunt.sock.`

func cmdVersion(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("shunt version", flag.ContinueOnError)
	if err := parseFlags(fs, args, stdout, stderr); err != nil || fs.NArg() > 0 {
		return usageExit(err, stderr, "usage: shunt version")
	}
	fmt.Fprintln(stdout, version())
	return 0
}

// newRoot builds the command tree, writing to stdout and stderr.
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "shunt",
		Short: "tunnel chosen TCP traffic over SSH, transparently",
		Long: `shunt tunnels chosen TCP traffic over SSH, transparently: the applications
keep connecting to their usual addresses.` + configHelp + `
Run "shunt COMMAND --help" for a command's flags and examples.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.HiddenDefaultCmd = false
	for _, c := range commands() {
		root.AddCommand(wrap(c, stdout, stderr))
	}
	root.AddCommand(&cobra.Command{
		Use:   "man DIR",
		Short: "write a man page for each command into DIR",
		Long:  `Write shunt(1) and a man page for each command (shunt-up(1), ...) into DIR, which must exist.`,
		Example: `  shunt man /usr/share/man/man1
  mkdir -p man && shunt man man`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			hdr := &doc.GenManHeader{Title: "SHUNT", Section: "1", Source: "shunt", Manual: "shunt manual"}
			if err := doc.GenManTree(cmd.Root(), hdr, args[0]); err != nil {
				fmt.Fprintf(stderr, "shunt man: %v\n", err)
				return exitCode(1)
			}
			return nil
		},
	})
	return root
}

// wrap makes a cobra command of c: cobra parses none of its flags; c.Run
// does. Asked for help, it prints the Long text and the examples, then the
// flags as c.Run lists them.
func wrap(c command, stdout, stderr io.Writer) *cobra.Command {
	cc := &cobra.Command{
		Use: c.Use, Short: c.Short, Long: c.Long, Example: c.Example,
		Hidden:             c.Hidden,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if helpAsked(args) {
				fmt.Fprintf(stdout, "%s\n\nUsage:\n  shunt %s\n\nExamples:\n%s\n\n", cmd.Long, cmd.Use, cmd.Example)
			}
			if code := c.Run(args, stdout, stderr); code != 0 {
				return exitCode(code)
			}
			return nil
		},
	}
	var fs *flag.FlagSet
	if !c.Hidden {
		if fs = commandFlags(c); fs != nil {
			cobraFlags(fs, cc.Flags())
		}
	}
	cc.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		// cobra completes the flags' names; their values are ours to
		// complete, as cobra does not parse them.
		if n := len(args); n > 0 && fs != nil && strings.HasPrefix(args[n-1], "-") && !strings.Contains(args[n-1], "=") {
			if f := fs.Lookup(strings.TrimLeft(args[n-1], "-")); f != nil {
				if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
					switch {
					case f.Name == "config" || f.Name == "c" || f.Name == "global" || f.Name == "user-config":
						return []string{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
					case takesFile(f):
						return nil, cobra.ShellCompDirectiveDefault
					}
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
			}
		}
		if strings.HasPrefix(toComplete, "-") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if c.Complete != nil {
			return c.Complete(args, toComplete), cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveDefault
	}
	return cc
}

// helpAsked tells whether args ask for help the way the flag package takes
// it: -h, -help or --help before the first positional argument or "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch {
		case a == "-h" || a == "-help" || a == "--help" || a == "--h":
			return true
		case a == "--" || !strings.HasPrefix(a, "-"):
			return false
		}
	}
	return false
}

// completeProfiles completes profile names from the configuration that the
// command line so far names.
func completeProfiles(args []string, toComplete string) []string {
	cf, _, err := parseConfigFlags("complete", args, io.Discard, io.Discard, func(fs *flag.FlagSet) {
		fs.String("socket", "", "")
		fs.Bool("json", false, "")
		fs.Bool("wait", false, "")
	})
	if err != nil {
		return nil
	}
	cfg, err := cf.load()
	if err != nil || cfg.Config == nil {
		return nil
	}
	var names []string
	for _, p := range cfg.Config.Profiles {
		if strings.HasPrefix(p.Name, toComplete) {
			names = append(names, p.Name)
		}
	}
	return names
}

// completeFlows completes flow IDs from the running shunt.
func completeFlows(args []string, toComplete string) []string {
	path := os.Getenv(control.SocketEnv)
	for i, a := range args {
		if (a == "--socket" || a == "-socket") && i+1 < len(args) {
			path = args[i+1]
		}
	}
	if path == "" {
		path = control.DefaultSocket
	}
	flows, err := (&control.Client{Socket: path}).Flows(context.Background())
	if err != nil {
		return nil
	}
	var ids []string
	for _, f := range flows {
		if id := fmt.Sprint(f.ID); strings.HasPrefix(id, toComplete) {
			ids = append(ids, id+"\t"+destination(f))
		}
	}
	return ids
}

// execute runs the command line args on the tree and returns the exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	// cobra's own errors: an unknown command, or the wrong arguments to
	// one of its commands (man, completion).
	cmd, _, ferr := root.Find(args)
	if ferr != nil || cmd == nil || cmd == root {
		fmt.Fprintf(stderr, "shunt: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	fmt.Fprintf(stderr, "shunt: %v\n\n", err)
	cmd.SetOut(stderr)
	cmd.Usage()
	return 2
}
