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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/state"
	"github.com/shunt-dev/shunt/tun"
)

const usage = `shunt tunnels chosen TCP traffic over SSH, transparently.

Usage:
  shunt up [--config FILE]...          capture and tunnel until interrupted (needs root)
  shunt daemon [--config FILE]...      the same without a terminal: as a service (see shunt.service)
  shunt init USER@HOST --capture CIDR  write a starter configuration
  shunt check [--config FILE]...       validate the configuration
  shunt explain [flags] DEST[:PORT]    show which rule a flow matches, and why
  shunt import-tectia [--best-effort] ssh-broker-config.xml
                                       convert a Tectia configuration to YAML
  shunt demo [--keep]                  see shunt work in a small world of network namespaces (needs root)
  shunt cleanup [--config FILE]...     remove the kill switch and what a crashed shunt left (needs root)
  shunt gateway [flags]                run an SSH server that only forwards TCP to permitted destinations
  shunt version                        print the version
  shunt completion bash|zsh|fish|powershell
                                       print a shell completion script
  shunt man DIR                        write a man page for each command into DIR
` + ctlUsage + `

The configuration is /etc/shunt/shunt.yaml, then the user's
~/.config/shunt/shunt.yaml, then each --config file, merged.
Run "shunt COMMAND --help" for a command's flags and examples.
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
	switch args[0] {
	case "help", "-h", "-help", "--help":
		if len(args) == 1 {
			fmt.Fprint(stdout, usage)
			return 0
		}
	}
	return execute(args, stdout, stderr)
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
	// daemon reads it for shunt daemon (config.Options.Daemon).
	daemon bool
}

func (c *configFlags) register(fs *flag.FlagSet) {
	fs.Var(&c.extra, "config", "configuration `file` (YAML), read after the global and user files; repeatable")
	fs.Var(&c.extra, "c", "shorthand for --config")
	fs.StringVar(&c.global, "global", config.GlobalFile, "the global configuration `file` (empty: none)")
	fs.StringVar(&c.user, "user-config", config.UserFile(), "the user's configuration `file` (empty: none)")
}

func (c *configFlags) load() (*config.Loaded, error) {
	return config.LoadLayers(c.layers())
}

// layers are the files the flags name, read as the command reads them.
func (c *configFlags) layers() config.Layers {
	return config.Layers{Global: c.global, User: c.user, Extra: c.extra, Options: config.Options{Daemon: c.daemon}}
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
	if fc, ok := stdout.(*flagCapture); ok {
		fc.fs = fs
		return flag.ErrHelp
	}
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
	// The OS's rules for the device's name are tun's, not config's.
	if cfg.TUN.TUNEnabled() {
		if err := tun.CheckName(cfg.TUN.Name); err != nil {
			fmt.Fprintln(stderr, cfg.TUN.Errorf("tun.name %v", err))
			fatal = true
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
	if hosts := plan.WatchedHosts(); len(hosts) > 0 {
		captured += " and the addresses of " + strings.Join(hosts, ", ")
	}
	var byName []string
	for _, r := range plan.Rules {
		if r.Action != router.Direct {
			byName = append(append(byName, r.Hosts...), r.Domains...)
		}
	}
	if d := cfg.DNS; d.Serve && len(byName) > 0 {
		captured += " and, by name, " + strings.Join(slices.Compact(byName), ", ")
	}
	fmt.Fprintf(stdout, "%s: OK: %d profiles, %d rules, captures %s\n", layerNames(cfg.Layers), len(cfg.Profiles), len(cfg.Rules), captured)
	if d := cfg.DNS; d.Serve {
		through := ""
		for _, rt := range d.ResolveThrough {
			through += fmt.Sprintf("; %s resolved by %s through profile %s", strings.Join(rt.Domains, ", "), rt.Server, rt.Profile)
		}
		fmt.Fprintf(stdout, "split DNS: mode %s, fake addresses from %s%s\n", d.Mode, prefixes(d.Prefixes()), through)
	}
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
	return cmdRun("up", false, args, stdout, stderr, nil)
}

// cmdDaemon runs shunt daemon, as the service where a service manager
// other than systemd started it (Windows': runService).
func cmdDaemon(args []string, stdout, stderr io.Writer) int {
	if code, ok := runService(func(h *serviceHooks) int { return cmdRun("daemon", true, args, h.output, h.output, h) }); ok {
		return code
	}
	return cmdRun("daemon", true, args, stdout, stderr, nil)
}

// cmdRun runs shunt up, or shunt daemon (headless: nobody is asked at a
// terminal, prompts wait for shunt auth). svc connects it to the service
// manager that runs it, nil if none does (or systemd, which needs
// nothing of that).
func cmdRun(name string, headless bool, args []string, stdout, stderr io.Writer, svc *serviceHooks) int {
	var pprof pprofFlag
	cf, rest, err := parseConfigFlags(name, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.Var(&pprof, "pprof", "serve Go's pprof profiles on the control socket, at /debug/pprof/ (to root and shunt's own user only)")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, stderr, "usage: shunt "+name+" [--config FILE]... [--pprof]")
	}
	// A profile without allowed_users carries the daemon's own user's
	// flows, and shunt up's those of the user it acts for.
	cf.daemon = name == "daemon"
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
	log := newLogger(stderr, cfg.Log)
	for _, l := range loaded.Layers {
		if l.Found {
			log.WithField("file", l.Path).Infof("read %s", layerRole(l.Role))
		}
	}
	logLoaded(log, loaded)
	procs, fromEnv := limitProcs(os.Getenv)
	how := "half of them by default; the GOMAXPROCS environment variable chooses"
	if fromEnv {
		how = "set by GOMAXPROCS"
	}
	log.Infof("running Go code on %d of %d CPUs (%s)", procs, runtime.NumCPU(), how)
	gc, limit, gcEnv, limitEnv := setGC(os.Getenv, engine.FlowMemory(cfg))
	log.WithFields(logrus.Fields{"gogc": gc, "from_gogc": gcEnv, "memory_limit": limit, "from_gomemlimit": limitEnv}).
		Debug("garbage collector: shunt's target and soft memory limit, unless GOGC and GOMEMLIMIT choose")
	stop := catchStopSignals(log)
	defer stop.release()
	svc.attach(log, stop.sigs, stop.done)
	o := upOptions{headless: headless, pprof: bool(pprof), loaded: loaded, layers: cf.layers(), load: func() (*config.Loaded, error) {
		l, err := cf.load()
		if err != nil {
			return nil, err
		}
		logLoaded(log, l)
		return l, nil
	}}
	if err := up(stop.ctx, stop.shutdown, cfg, log, o); err != nil {
		log.Error(err)
		return 1
	}
	return 0
}

// newLogger logs to w as cfg says: text or JSON, from its level on.
func newLogger(w io.Writer, cfg config.Log) *logrus.Logger {
	log := logrus.New()
	log.Out = w
	const stamp = "2006-01-02T15:04:05.000Z07:00"
	if cfg.Format == config.LogJSON {
		log.Formatter = &logrus.JSONFormatter{TimestampFormat: stamp}
	} else {
		log.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: stamp}
	}
	log.Level, _ = logrus.ParseLevel(cfg.Level)
	return log
}

// logLoaded logs what loading the configuration noted, and the problems
// of the files it names.
func logLoaded(log logrus.FieldLogger, l *config.Loaded) {
	for _, n := range l.Notes {
		log.Info(n)
	}
	for _, p := range l.Problems {
		if p.Fatal {
			log.Error(p.String())
		} else {
			log.Warn(p.String())
		}
	}
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

// upOptions are how up runs the engine.
type upOptions struct {
	// headless: nobody is at a terminal (shunt daemon). Prompts go to
	// SSH_ASKPASS if it is set, else wait for shunt auth.
	headless bool
	// load reads the configuration again (SIGHUP, shunt reload).
	load func() (*config.Loaded, error)
	// loaded is the configuration read at start, with its files (for
	// the control API's explain and config); nil: they answer 501.
	loaded *config.Loaded
	// layers are the files load reads, for the web console's checks of
	// an edit (with the edited file in place).
	layers config.Layers
	// notify tells systemd; nil: newNotifier.
	notify *notifier
	// pprof serves Go's profiles on the control socket (--pprof).
	pprof bool
}

// up runs the engine until ctx ends, shunt down asks, or the device
// fails, then stops it (engine.Stop: new flows refused, running ones
// given shutdown_grace) and removes everything it set up; sd.hurry
// removes the routes and policy rules at once and cuts the waits short,
// and sd.removed is closed once they are gone. It serves the control
// socket meanwhile, and refuses to start without it (another shunt
// runs), except where the system cannot tell who connects
// (control.ErrUnsupported). SIGHUP reloads.
func up(ctx context.Context, sd *shutdown, cfg *config.Config, log *logrus.Logger, o upOptions) error {
	sys := o.notify
	if sys == nil {
		sys = newNotifier(log)
	}
	be := &served{sys: sys, log: log, layers: o.layers}
	be.loaded.Store(o.loaded)
	deps := engine.Deps{Log: log}
	if o.load != nil {
		deps.Load = func() (*config.Config, error) {
			l, err := o.load()
			if err != nil {
				return nil, err
			}
			be.next = l // served.Reload holds be.mu
			return l.Config, nil
		}
	}
	if o.headless {
		// Never the terminal, even if there is one.
		if p := prompt.FromEnv(os.Getenv, false); p != nil {
			deps.Prompter = p
		} else {
			deps.Prompter = &prompt.Queue{}
		}
	}
	e, err := engine.New(cfg, deps)
	if err != nil {
		return err
	}
	be.Backend, be.eng = e.Control(), e
	srv, err := control.NewServer(control.Options{Socket: cfg.Control.Socket, Group: cfg.Control.Group, Backend: be, Log: log, Pprof: o.pprof})
	switch {
	case errors.Is(err, control.ErrUnsupported):
		log.Warn(err)
		if o.pprof {
			log.Warn("--pprof: no profiles without the control socket")
		}
	case err != nil:
		e.Close()
		return err
	case o.pprof:
		log.WithField("socket", srv.Socket()).Info("serving pprof on the control socket at /debug/pprof/, to root and shunt's own user only (curl --unix-socket SOCKET http://shunt/debug/pprof/)")
	}
	if l := cfg.Metrics.Listen; l != "" {
		ms, err := metrics.Listen(l, e.Metrics(), log)
		if err != nil {
			if srv != nil {
				srv.Close()
			}
			e.Close()
			return err
		}
		defer ms.Close()
	}
	stopConsole, err := startConsole(cfg, srv, be, log)
	if err != nil {
		if srv != nil {
			srv.Close()
		}
		e.Close()
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
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: reading the configuration again")
				be.Reload(ctx, control.ReloadOptions{})
			case <-upDone:
				return
			}
		}
	}()
	closeServer := func() {
		stopConsole()
		if srv != nil {
			srv.Close()
		}
	}
	if err := e.Start(ctx); err != nil {
		closeServer()
		// Start closed what it had opened.
		if ctx.Err() != nil {
			log.Info("stopping: start-up cut short; what was set up is removed")
			return nil
		}
		return err
	}
	sys.ready()
	go sys.watchdog(watchdogInterval(log), e.Alive, upDone)
	if cfg.TUN.TUNEnabled() {
		log.WithFields(logrus.Fields{"device": e.DeviceName(), "mtu": cfg.TUN.MTU}).Info("shunt is up; Ctrl-C, SIGTERM or shunt down stops it")
	} else {
		var serving []string
		for _, l := range cfg.Listeners() {
			serving = append(serving, l.Name())
		}
		log.WithField("serving", strings.Join(serving, ", ")).Info("shunt is up, without a TUN (tun.enabled: false): only its listeners; Ctrl-C, SIGTERM or shunt down stops it")
	}

	var runErr error
	select {
	case <-ctx.Done():
	case <-e.Stopping():
		log.Info("stopping: shunt down asked for it")
	case err := <-e.Err():
		runErr = e.DeviceFailed(err)
		log.Errorf("%v: stopping", runErr)
	}
	sys.stopping()
	stopCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sd.hurry:
			cancel()
		case <-stopCtx.Done():
		}
	}()
	if err := e.Stop(stopCtx); err != nil {
		log.Error(err)
	}
	// Last: shunt down waits for the socket to go, and by now the
	// routes are gone.
	closeServer()
	return runErr
}

// served is the engine as the control socket serves it, with reloads
// logged and told to systemd (a reload by SIGHUP goes through it too).
type served struct {
	control.Backend
	sys *notifier
	log logrus.FieldLogger
	mu  sync.Mutex // one reload at a time

	// eng and loaded, the configuration in force with its files, answer
	// explain and config (nil: those answer an error); next is the
	// configuration the reload under way read (mu held).
	eng    *engine.Engine
	loaded atomic.Pointer[config.Loaded]
	next   *config.Loaded
	// layers are the files loaded was read from (config.Layers).
	layers config.Layers
	// console is the web console served, for Status (nil: none).
	console atomic.Pointer[state.Console]
}

// Status is the engine's, with the web console.
func (s *served) Status() state.Status {
	st := s.Backend.Status()
	st.Console = s.console.Load()
	return st
}

// Reload reads the configuration again; a configuration with errors is
// refused, every problem logged at its file and line, the old one kept.
func (s *served) Reload(ctx context.Context, opts control.ReloadOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sys.reloading()
	defer s.sys.ready()
	s.next = nil
	err := s.Backend.Reload(ctx, opts)
	if err == nil && s.next != nil {
		s.loaded.Store(s.next)
	}
	s.next = nil
	if err != nil {
		s.log.Error("the configuration was refused; the old one stays in force:")
		for _, line := range problemList(err) {
			s.log.Error(line)
		}
	}
	return err
}

// problemList is one line a problem.
func problemList(err error) []string {
	var b strings.Builder
	printConfigError(&b, err)
	return strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
}

var _ control.Backend = (*served)(nil)
