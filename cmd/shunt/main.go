// Command shunt tunnels chosen TCP traffic over SSH, transparently: the
// applications keep connecting to their usual addresses.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/netstack"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

const usage = `shunt tunnels chosen TCP traffic over SSH, transparently.

Usage:
  shunt up --config FILE      capture and tunnel until interrupted (needs root)
  shunt check --config FILE   validate a configuration file
  shunt version               print the version

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
		return cmdUp(args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "shunt: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func version() string {
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return fmt.Sprintf("shunt %s %s %s/%s", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// configFlag parses the flags of a command that takes --config.
func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet("shunt "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration `file` (YAML)")
	fs.StringVar(path, "c", "", "shorthand for --config")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage: shunt %s --config FILE\n", name)
		return "", false
	}
	return *path, true
}

func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %d profiles, %d rules, captures %s\n", path, len(cfg.Profiles), len(cfg.Rules), prefixes(router.Captured(cfg.RouterRules())))
	return 0
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

func cmdUp(args []string, stderr io.Writer) int {
	path, ok := configFlag("up", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	log := logrus.New()
	log.Out = stderr
	log.Formatter = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "2006-01-02T15:04:05.000Z07:00"}
	log.Level, _ = logrus.ParseLevel(cfg.Log.Level)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := up(ctx, stop, cfg, log); err != nil {
		log.Error(err)
		return 1
	}
	return 0
}

// up runs the capture until ctx ends, then removes everything it set up.
func up(ctx context.Context, stopSignals func(), cfg *config.Config, log *logrus.Logger) error {
	if runtime.GOOS == "linux" && os.Geteuid() != 0 {
		return errors.New("shunt up needs root (CAP_NET_ADMIN) to create the TUN device and its routes: run it with sudo")
	}
	rules := cfg.RouterRules()
	captured := router.Captured(rules)
	pcfg := platform.DefaultConfig(cfg.TUN.Name, captured)
	logPlan(log, cfg, rules, captured)

	if err := platform.Prepare(pcfg, log); err != nil {
		return err
	}
	dev, err := tun.Open(cfg.TUN.Name, cfg.TUN.MTU)
	if err != nil {
		return fmt.Errorf("%w (shunt needs /dev/net/tun and root)", err)
	}
	network, err := platform.Setup(pcfg, log)
	if err != nil {
		dev.Close()
		return err
	}
	defer func() {
		if err := network.Close(); err != nil {
			log.WithError(err).Error("removing routes")
		}
		log.Debug("routes and policy rules removed")
	}()

	bypass := platform.BypassDialer(pcfg.Mark)
	b, err := broker.New(brokerProfiles(cfg), broker.Options{
		Dialer:      bypass,
		AgentSocket: os.Getenv("SSH_AUTH_SOCK"),
		Prompter:    prompt.FromEnv(os.Getenv, prompt.HasTTY()),
		ProxyRules:  brokerProxyRules(cfg),
		Log:         log,
	})
	if err != nil {
		dev.Close()
		return err
	}
	defer b.Close()
	b.Start(ctx)
	r := router.New(rules, b, bypass, log)
	stack, err := netstack.New(dev, r, netstack.Options{MTU: cfg.TUN.MTU, Log: log})
	if err != nil {
		dev.Close()
		return err
	}
	defer func() {
		stack.Close()
		log.Debug("network stack and TUN device closed")
	}()
	log.WithFields(logrus.Fields{"device": cfg.TUN.Name, "mtu": cfg.TUN.MTU}).Info("shunt is up; Ctrl-C or SIGTERM stops it")

	select {
	case <-ctx.Done():
		// From now on a second Ctrl-C kills at once (the next start
		// clears what is left).
		stopSignals()
		log.Info("stopping: removing routes and the TUN device")
		return nil
	case err := <-stack.Err():
		return fmt.Errorf("TUN device failed: %w", err)
	}
}

func logPlan(log logrus.FieldLogger, cfg *config.Config, rules []router.Rule, captured []netip.Prefix) {
	log.WithField("config", cfg.Path).Infof("capturing %s via %s", prefixes(captured), cfg.TUN.Name)
	for i := range rules {
		r := &rules[i]
		f := logrus.Fields{"rule": r.Label(i), "action": r.Action.String()}
		if len(r.Destinations) > 0 {
			f["destinations"] = prefixes(r.Destinations)
		}
		if len(r.Ports) > 0 {
			f["ports"] = prefixes(r.Ports)
		}
		if r.Action == router.Tunnel {
			p, _ := cfg.Profile(r.Profile)
			f["via"] = fmt.Sprintf("%s (%s@%s:%d)", p.Name, p.User, strings.Join(p.Host, ","), p.Port)
		}
		log.WithFields(f).Info("rule")
	}
	log.Info("everything else is left alone; captured flows that no rule matches go direct")
}

// brokerProfiles converts validated profiles for the broker.
func brokerProfiles(cfg *config.Config) []broker.Profile {
	out := make([]broker.Profile, len(cfg.Profiles))
	for i, p := range cfg.Profiles {
		policy, _ := broker.ParseHostKeyPolicy(p.HostKeyPolicy)
		bp := broker.Profile{
			Name:              p.Name,
			Hosts:             p.Host,
			Port:              p.Port,
			User:              p.User,
			AuthMethods:       p.AuthMethods,
			IdentityFiles:     p.IdentityFiles,
			IdentitiesOnly:    p.IdentitiesOnly,
			CertificateFiles:  p.CertificateFiles,
			KnownHosts:        p.KnownHosts,
			HostKeyPolicy:     policy,
			Ciphers:           p.Ciphers,
			KeepaliveInterval: p.KeepaliveInterval.D,
			KeepaliveCount:    p.KeepaliveCount,
			IdleTimeout:       p.IdleTimeout.D,
			Connections:       p.Connections,
			Jump:              p.Jump,
			ConnectOnStart:    p.ConnectOnStart,
		}
		if p.Proxy != "" {
			bp.Proxy, _ = broker.ParseProxy(p.Proxy)
		}
		out[i] = bp
	}
	return out
}

// brokerProxyRules converts validated proxy rules for the broker.
func brokerProxyRules(cfg *config.Config) []broker.ProxyRule {
	out := make([]broker.ProxyRule, len(cfg.ProxyRules))
	for i, r := range cfg.ProxyRules {
		for _, d := range r.Destinations {
			if p, err := netip.ParsePrefix(d); err == nil {
				out[i].Networks = append(out[i].Networks, p.Masked())
			} else if a, err := netip.ParseAddr(d); err == nil {
				out[i].Networks = append(out[i].Networks, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			} else {
				out[i].Hosts = append(out[i].Hosts, d)
			}
		}
		if r.Proxy != "direct" {
			out[i].Proxy, _ = broker.ParseProxy(r.Proxy)
		}
	}
	return out
}

// The pieces fit: the router handles the stack's flows and the broker
// opens the router's tunnels.
var (
	_ netstack.Handler = (*router.Router)(nil)
	_ router.Tunnels   = (*broker.Broker)(nil)
)
