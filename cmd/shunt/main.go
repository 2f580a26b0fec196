// Command shunt tunnels chosen TCP traffic over SSH, transparently: the
// applications keep connecting to their usual addresses.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
)

const usage = `shunt tunnels chosen TCP traffic over SSH, transparently.

Usage:
  shunt up [--config FILE]...          capture and tunnel until interrupted (needs root)
  shunt check [--config FILE]...       validate the configuration
  shunt explain [flags] DEST[:PORT]    show which rule a flow matches, and why
  shunt import-tectia [--best-effort] ssh-broker-config.xml
                                       convert a Tectia configuration to YAML
  shunt version                        print the version
` + ctlUsage + `

The configuration is /etc/shunt/shunt.yaml, then the user's
~/.config/shunt/shunt.yaml, then each --config file, merged.
Run "shunt COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "up":
		return cmdUp(args, stdout, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "explain":
		return cmdExplain(args, stdout, stderr)
	case "import-tectia":
		return cmdImportTectia(args, stdout, stderr)
	case "status", "flows", "reload", "down", "connect", "disconnect", "close", "auth":
		return runCtl(cmd, args, stdout, stderr)
	case "version":
		fs := flag.NewFlagSet("shunt version", flag.ContinueOnError)
		if err := parseFlags(fs, args, stdout, stderr); err != nil || fs.NArg() > 0 {
			return usageExit(err, stderr, "usage: shunt version")
		}
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "shunt: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// versionOverride is the version to report, when the build sets one:
//
//	go build -ldflags "-X main.versionOverride=$(git describe --always --dirty)" ./cmd/shunt
var versionOverride string

func version() string {
	bi, _ := debug.ReadBuildInfo()
	return fmt.Sprintf("shunt %s (%s %s/%s)", describeBuild(bi, versionOverride), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// describeBuild says which code a binary is: the version the build set
// with -ldflags, else the module's version (a release, or the
// pseudo-version go build derives from the checkout, which names the
// commit and ends in +dirty for uncommitted changes), else the commit that
// version control recorded, else that nothing was recorded and how to
// record it.
func describeBuild(bi *debug.BuildInfo, override string) string {
	if override != "" {
		return override
	}
	if bi == nil {
		return "devel, without build information"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, at string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel, no version recorded (go run, go test, -buildvcs=false and git worktrees record none): " +
			"build with go build in a git clone, or set one with -ldflags \"-X main.versionOverride=$(git describe --always --dirty)\""
	}
	var about []string
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		about = append(about, t.UTC().Format(time.DateOnly))
	}
	if modified {
		about = append(about, "modified")
	}
	v := "devel " + rev[:min(len(rev), 12)]
	if len(about) > 0 {
		v += " (" + strings.Join(about, ", ") + ")"
	}
	return v
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// configFlags are the flags of every command that reads the configuration.
type configFlags struct {
	extra        stringList
	global, user string
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.extra, "config", "configuration `file` (YAML), read after the global and user files; repeatable")
	fs.Var(&c.extra, "c", "shorthand for --config")
	fs.StringVar(&c.global, "global", config.GlobalFile, "the global configuration `file` (empty: none)")
	fs.StringVar(&c.user, "user-config", config.UserFile(), "the user's configuration `file` (empty: none)")
}

func (c *configFlags) load() (*config.Loaded, error) {
	return config.LoadLayers(config.Layers{Global: c.global, User: c.user, Extra: c.extra})
}

// parseConfigFlags parses a command's flags, before and after its
// positional arguments, which it returns; extra registers more flags. Its
// error is parseFlags'.
func parseConfigFlags(name string, args []string, stdout, stderr io.Writer, extra func(*flag.FlagSet)) (*configFlags, []string, error) {
	fs := flag.NewFlagSet("shunt "+name, flag.ContinueOnError)
	cf := &configFlags{}
	cf.register(fs)
	if extra != nil {
		extra(fs)
	}
	var rest []string
	for {
		if err := parseFlags(fs, args, stdout, stderr); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return cf, rest, nil
}

// parseFlags parses args with fs. Asked for help (-h, -help, --help), it
// prints the flags to stdout and returns flag.ErrHelp; a bad flag is
// printed to stderr, with the flags, and returned.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	var out bytes.Buffer
	fs.SetOutput(&out)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		stdout.Write(out.Bytes())
	} else {
		stderr.Write(out.Bytes())
	}
	return err
}

// usageExit is the exit code for a command line that parseFlags refused
// (err) or whose arguments are wrong (err nil): 0 after help, else 2, with
// the command's usage line on stderr.
func usageExit(err error, stderr io.Writer, usage string) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, usage)
	return 2
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	cf, rest, err := parseConfigFlags("check", args, stdout, stderr, nil)
	if err != nil || len(rest) > 0 {
		return usageExit(err, stderr, "usage: shunt check [--config FILE]...")
	}
	cfg, err := cf.load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, n := range cfg.Notes {
		fmt.Fprintf(stderr, "note: %s\n", n)
	}
	// A file that makes a profile unusable fails the check; shunt up
	// logs it and starts (the files are read again at each connection).
	fatal := false
	for _, p := range cfg.Problems {
		if p.Fatal {
			fmt.Fprintln(stderr, p)
			fatal = true
		} else {
			fmt.Fprintf(stderr, "warning: %s\n", p)
		}
	}
	plan, err := engine.Convert(cfg.Config)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	rs := plan.Ruleset
	for _, sh := range rs.Shadowed() {
		fmt.Fprintf(stderr, "warning: %s\n", sh)
	}
	if fatal {
		return 1
	}
	captured := prefixes(rs.Captured(nil))
	if hosts := cfg.Hosts(); len(hosts) > 0 {
		captured += " and the addresses of " + strings.Join(hosts, ", ")
	}
	fmt.Fprintf(stdout, "%s: OK: %d profiles, %d rules, captures %s\n", layerNames(cfg.Layers), len(cfg.Profiles), len(cfg.Rules), captured)
	return 0
}

func layerNames(ls []config.Layer) string {
	var names []string
	for _, l := range ls {
		if l.Found {
			names = append(names, l.Path)
		}
	}
	return strings.Join(names, " + ")
}

// printConfigError prints one problem a line.
func printConfigError(w io.Writer, err error) {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintln(w, err)
}

func prefixes[T fmt.Stringer](ps []T) string {
	if len(ps) == 0 {
		return "nothing"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func cmdUp(args []string, stdout, stderr io.Writer) int {
	var pprofAddr string
	cf, rest, err := parseConfigFlags("up", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&pprofAddr, "pprof", "", "serve Go's pprof profiles on this loopback `address` (e.g. 127.0.0.1:6060)")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, stderr, "usage: shunt up [--config FILE]... [--pprof ADDR]")
	}
	loaded, err := cf.load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	// A write to a pipe whose reader has gone (shunt up 2>&1 | tail, and
	// Ctrl-C ends tail too) must fail, and logrus carry on, rather than
	// kill shunt before it has removed its routes: unless SIGPIPE is
	// notified, Go dies of it on a write to fd 1 or 2.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	cfg := loaded.Config
	log := logrus.New()
	log.Out = stderr
	log.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"}
	log.Level, _ = logrus.ParseLevel(cfg.Log.Level)
	for _, l := range loaded.Layers {
		if l.Found {
			log.WithField("file", l.Path).Infof("read %s", layerRole(l.Role))
		}
	}
	for _, n := range loaded.Notes {
		log.Info(n)
	}
	for _, p := range loaded.Problems {
		if p.Fatal {
			log.Error(p.String())
		} else {
			log.Warn(p.String())
		}
	}
	procs, fromEnv := limitProcs(os.Getenv)
	how := "half of them by default; the GOMAXPROCS environment variable chooses"
	if fromEnv {
		how = "set by GOMAXPROCS"
	}
	log.Infof("running Go code on %d of %d CPUs (%s)", procs, runtime.NumCPU(), how)
	if pprofAddr != "" {
		if err := servePprof(pprofAddr, log); err != nil {
			log.Error(err)
			return 1
		}
	}

	stop := catchStopSignals(log)
	defer stop.release()
	if err := up(stop.ctx, stop.shutdown, cfg, log); err != nil {
		log.Error(err)
		return 1
	}
	return 0
}

// layerRole names a configuration layer's role in a sentence.
func layerRole(role string) string {
	switch role {
	case "global":
		return "the global configuration"
	case "user":
		return "the user's configuration"
	case "config":
		return "a configuration file given with --config"
	}
	return "the " + role + " configuration"
}

// shutdown is what up's tear-down shares with the signal handler.
type shutdown struct {
	hurry   chan struct{} // closed by a second signal
	removed chan struct{} // closed by up once its routes and policy rules are gone
}

// stopSignals turns SIGINT and SIGTERM into shutdown. The first ends ctx,
// and up removes what it set up, in order. Later ones are caught too, so
// none can kill shunt before its routes and policy rules are gone (a
// second signal can come at once: timeout(1) sends its signal to the child
// and then to the child's process group): the second makes up remove them
// at once and stop waiting for flows; any after that exits as soon as they
// are removed.
type stopSignals struct {
	ctx      context.Context
	cancel   context.CancelFunc
	shutdown *shutdown
	sigs     chan os.Signal
	done     chan struct{}
}

func catchStopSignals(log logrus.FieldLogger) *stopSignals {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stopSignals{
		ctx: ctx, cancel: cancel,
		shutdown: &shutdown{hurry: make(chan struct{}), removed: make(chan struct{})},
		sigs:     make(chan os.Signal, 4),
		done:     make(chan struct{}),
	}
	signal.Notify(s.sigs, os.Interrupt, syscall.SIGTERM)
	go s.handle(log)
	return s
}

func (s *stopSignals) handle(log logrus.FieldLogger) {
	for n := 1; ; n++ {
		var sig os.Signal
		select {
		case sig = <-s.sigs:
		case <-s.done:
			return
		}
		// Act before logging: a log write may block, or fail.
		switch n {
		case 1:
			s.cancel()
		case 2:
			close(s.shutdown.hurry)
			log.WithField("signal", sig).Warn("already stopping: removing the routes and policy rules now, without waiting for open flows; signal again to exit as soon as they are gone")
		default:
			select {
			case <-s.shutdown.removed:
				os.Exit(1)
			case <-s.done:
				return
			}
		}
	}
}

// release stops catching the signals.
func (s *stopSignals) release() {
	signal.Stop(s.sigs)
	close(s.done)
	s.cancel()
}

// up runs the engine until ctx ends or the device fails, then removes
// everything it set up; sd.hurry removes the routes and policy rules at
// once and cuts the waits short, and sd.removed is closed once they are
// gone.
func up(ctx context.Context, sd *shutdown, cfg *config.Config, log *logrus.Logger) error {
	e, err := engine.New(cfg, engine.Deps{Log: log})
	if err != nil {
		return err
	}
	upDone := make(chan struct{})
	defer close(upDone)
	go func() {
		select {
		case <-sd.hurry:
			e.Hurry()
		case <-upDone:
		}
	}()
	go func() {
		select {
		case <-e.Removed():
			close(sd.removed)
		case <-upDone:
		}
	}()
	if err := e.Start(ctx); err != nil {
		// Start closed what it had opened.
		if ctx.Err() != nil {
			log.Info("stopping: start-up cut short; what was set up is removed")
			return nil
		}
		return err
	}
	log.WithFields(logrus.Fields{"device": cfg.TUN.Name, "mtu": cfg.TUN.MTU}).Info("shunt is up; Ctrl-C or SIGTERM stops it")

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("stopping: removing routes, policy rules and the TUN device")
	case err := <-e.Err():
		runErr = fmt.Errorf("TUN device failed: %w", err)
	}
	if err := e.Close(); err != nil {
		log.Error(err)
	}
	return runErr
}
