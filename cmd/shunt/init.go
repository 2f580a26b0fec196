package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/term"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/starter"
)

const initUsage = "usage: shunt init USER@HOST --capture CIDR [--ports LIST] [--accept] [--profile NAME] [--identity FILE] [--known-hosts FILE] [--port N] [--output FILE] [--force] [--no-check]"

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

// initLoginTimeout bounds the login check (a prompt waiting for the user
// pauses the broker's own deadline, not this one).
const initLoginTimeout = 5 * time.Minute

// initRun is one shunt init: where the questions are asked and answered.
type initRun struct {
	in             *bufio.Reader // answers to the questions
	ask            bool          // in and stdout are a terminal: ask what the flags left out
	prompter       broker.Prompter
	getenv         func(string) string
	stdout, stderr io.Writer
}

// cmdInit writes a starter configuration, once the login it describes
// works.
func cmdInit(args []string, stdout, stderr io.Writer) int {
	r := &initRun{
		in:     bufio.NewReader(os.Stdin),
		ask:    term.IsTerminal(int(os.Stdin.Fd())) && term.IsTerminal(int(os.Stdout.Fd())),
		getenv: os.Getenv,
		stdout: stdout, stderr: stderr,
	}
	r.prompter = prompt.FromEnv(os.Getenv, prompt.HasTTY())
	return r.run(args)
}

// initFlags are shunt init's flags.
type initFlags struct {
	o                      starter.Options
	capture, ports         listFlag
	output                 string
	force, noCheck, accept bool
}

func (f *initFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.capture, "capture", "network whose traffic goes through the gateway (repeatable or comma `list`), e.g. 10.1.0.0/16")
	fs.Var(&f.ports, "ports", "only these ports, e.g. 25,143,993-995 (default every port)")
	fs.StringVar(&f.o.Profile, "profile", "gateway", "profile `name`")
	fs.StringVar(&f.o.Identity, "identity", "", "private key `file` for the login (default ssh_config's IdentityFile, the agent, ~/.ssh/id_*)")
	fs.StringVar(&f.o.KnownHosts, "known-hosts", "", "known_hosts `file` (default ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)")
	fs.IntVar(&f.o.Port, "port", 0, "SSH port of the gateway (default ssh_config's Port, else 22)")
	fs.StringVar(&f.output, "output", "", "`file` to write (default where shunt reads it)")
	fs.BoolVar(&f.force, "force", false, "replace an existing file")
	fs.BoolVar(&f.accept, "accept", false, "record the gateway's host key in known_hosts if it is not there (check its fingerprint first)")
	fs.BoolVar(&f.noCheck, "no-check", false, "write the file without logging in to the gateway or running shunt check")
}

func (r *initRun) run(args []string) int {
	fs := flag.NewFlagSet("shunt init", flag.ContinueOnError)
	var f initFlags
	f.register(fs)
	// USER@HOST may come before or after the flags.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	err := parseFlags(fs, args, r.stdout, r.stderr)
	if err == nil && target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	} else if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("shunt init: unexpected %q", fs.Arg(0))
	}
	if err == nil && (target == "" || len(f.capture) == 0) && r.ask {
		target, err = r.questions(target, &f)
	}
	if err != nil || target == "" || len(f.capture) == 0 {
		if err == nil {
			err = fmt.Errorf("shunt init: give USER@HOST and --capture")
		}
		return usageExit(err, r.stderr, initUsage)
	}
	o := f.o
	if u, h, ok := strings.Cut(target, "@"); ok {
		o.User, o.Host = u, h
	} else {
		o.Host = target
	}
	o.Capture, o.Ports = f.capture, f.ports
	path, mode := f.output, os.FileMode(0o600)
	if path == "" {
		if os.Geteuid() == 0 {
			path, mode = config.GlobalFile, 0o644
		} else {
			path = config.UserFile()
		}
	}
	// Refused before the login, not after it.
	if !f.force {
		if _, err := os.Lstat(path); err == nil {
			fmt.Fprintf(r.stderr, "shunt init: %s: %v; use --force to replace it, or --output FILE\n", path, starter.ErrExists)
			return 1
		}
	}
	data, cfg, err := render(o, path)
	if err != nil {
		fmt.Fprintln(r.stderr, "shunt init:", err)
		return 1
	}
	if !f.noCheck {
		if rc := r.login(cfg, o, f.accept); rc != 0 {
			fmt.Fprintf(r.stderr, "shunt init: nothing written to %s\n", path)
			return rc
		}
	}
	if err := starter.Write(path, data, mode, f.force); err != nil {
		fmt.Fprintln(r.stderr, "shunt init:", err)
		return 1
	}
	fmt.Fprintf(r.stdout, "wrote %s (mode %04o)\n", path, mode)
	if !f.noCheck {
		// The file alone: the global and user files are not its business.
		if rc := cmdCheck([]string{"--global", "", "--user-config", "", "--config", path}, r.stdout, r.stderr); rc != 0 {
			return rc
		}
	}
	switch path {
	case config.GlobalFile, config.UserFile():
		fmt.Fprintln(r.stdout, "next: sudo shunt up")
	default:
		fmt.Fprintf(r.stdout, "next: sudo shunt up --config %s\n", path)
	}
	return 0
}

// render makes the starter configuration for o, to be written at path,
// and reads it back as shunt would. A host that ssh_config says something
// about (its HostName, User, Port, keys, jump...) becomes a profile
// filled from ssh_config, as ssh itself would use it; any other gets
// host:.
func render(o starter.Options, path string) ([]byte, *config.Config, error) {
	parse := func(fromSSHConfig bool) ([]byte, *config.Config, error) {
		o.SSHConfig = fromSSHConfig
		data, err := starter.Render(o)
		if err != nil {
			return nil, nil, err
		}
		cfg, err := config.Parse(path, data)
		if err != nil {
			return nil, nil, fmt.Errorf("the configuration it would write is refused (change the flags):\n%w", err)
		}
		return data, cfg, nil
	}
	data, plain, err := parse(false)
	if err != nil {
		return nil, nil, err
	}
	viaData, via, err := parse(true)
	if err != nil {
		return nil, nil, err
	}
	name := o.Profile
	if name == "" {
		name = "gateway"
	}
	p, _ := plain.Profile(name)
	q, _ := via.Profile(name)
	if !slices.Equal(p.Host, q.Host) || p.Port != q.Port || p.User != q.User || p.Jump != q.Jump || p.Proxy != q.Proxy ||
		!slices.Equal(p.IdentityFiles, q.IdentityFiles) || !slices.Equal(p.CertificateFiles, q.CertificateFiles) ||
		!slices.Equal(p.KnownHosts, q.KnownHosts) || p.HostKeyPolicy != q.HostKeyPolicy {
		return viaData, via, nil
	}
	return data, plain, nil
}

// questions asks at the terminal for what the flags left out.
func (r *initRun) questions(target string, f *initFlags) (string, error) {
	ask := func(q string) (string, error) {
		fmt.Fprint(r.stdout, q)
		line, err := r.in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return "", fmt.Errorf("shunt init: no answer: %w", err)
		}
		return strings.TrimSpace(line), nil
	}
	var err error
	for target == "" {
		if target, err = ask("SSH server to tunnel through (USER@HOST, or a Host of ~/.ssh/config): "); err != nil {
			return "", err
		}
	}
	for len(f.capture) == 0 {
		a, err := ask("Networks to send through it (comma-separated, e.g. 10.1.0.0/16): ")
		if err != nil {
			return "", err
		}
		f.capture.Set(a)
	}
	if len(f.ports) == 0 {
		a, err := ask("Only these ports (e.g. 25,143,993-995; empty for every port): ")
		if err != nil {
			return "", err
		}
		f.ports.Set(a)
	}
	return target, nil
}

// login logs in to the gateway as shunt up would, with the configuration
// about to be written, and says what it found: the server, the user, the
// host key's fingerprint and whether known_hosts had it. An unknown host
// key is recorded with accept, or when the user at the terminal says
// yes; a key that changed is always refused.
func (r *initRun) login(cfg *config.Config, o starter.Options, accept bool) int {
	plan, err := engine.Convert(cfg)
	if err != nil {
		fmt.Fprintln(r.stderr, "shunt init:", err)
		return 1
	}
	name := o.Profile
	if name == "" {
		name = "gateway"
	}
	var p *broker.Profile
	for i := range plan.Profiles {
		if plan.Profiles[i].Name == name {
			p = &plan.Profiles[i]
		}
	}
	if p == nil {
		fmt.Fprintf(r.stderr, "shunt init: no profile %q in the configuration\n", name)
		return 1
	}
	cp, _ := cfg.Profile(name)
	if cp.SSHConfig != "" {
		fmt.Fprintf(r.stdout, "from ssh_config (%s), Host %s: %s\n", strings.Join(cfg.SSHConfigRead(), ", "), o.Host, describeProfile(p))
	}
	// The policy the file leaves (strict unless ssh_config says
	// otherwise) applies to shunt up; here the user decides.
	policy := p.HostKeyPolicy
	p.HostKeyPolicy = broker.Ask
	hk := &hostKeyAnswer{inner: r.prompter, accept: accept || policy == broker.AcceptNew, stdout: r.stdout}
	log := logrus.New()
	log.SetOutput(io.Discard)
	b, err := broker.New(plan.Profiles, broker.Options{
		AgentSocket: r.getenv("SSH_AUTH_SOCK"),
		Prompter:    hk,
		Home:        cfg.Account().Home,
		FileOwner:   engine.SudoOwner(r.getenv),
		Log:         log,
	})
	if err != nil {
		fmt.Fprintln(r.stderr, "shunt init:", err)
		return 1
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), initLoginTimeout)
	defer cancel()
	fmt.Fprintf(r.stdout, "logging in to %s as %s...\n", hostPort(p), p.User)
	if err := b.Connect(ctx, name); err != nil {
		var hke *broker.HostKeyError
		switch {
		case hk.refused != "":
			fmt.Fprintf(r.stderr, "shunt init: the host key of %s is not in %s: %s\n", hk.server, knownHostsFile(p), hk.refused)
			fmt.Fprintf(r.stderr, "  Check that fingerprint with the gateway's administrator (on the gateway:\n  ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then run shunt init again with --accept to record it.\n")
		case errors.As(err, &hke):
			fmt.Fprintf(r.stderr, "shunt init: %v\n", err)
		default:
			fmt.Fprintf(r.stderr, "shunt init: %v\n", err)
			fmt.Fprintf(r.stderr, "  Try the same login with: ssh %s (or --no-check to write the file anyway)\n", sshCommand(p))
		}
		return 1
	}
	key := ""
	for _, c := range b.Connections() {
		if c.Profile == name && c.Up {
			key = c.HostKey
		}
	}
	where := "known in " + knownHostsFile(p)
	if hk.recorded {
		where = "recorded now in " + knownHostsFile(p)
	}
	fmt.Fprintf(r.stdout, "logged in to %s as %s; host key %s (%s)\n", hostPort(p), p.User, key, where)
	return 0
}

// hostKeyAnswer answers the broker's host-key question for shunt init:
// yes with --accept, else the user's answer at the terminal; with no
// terminal, it refuses and keeps the fingerprint to show. Other questions
// (passphrases, passwords) go to the terminal or askpass.
type hostKeyAnswer struct {
	inner  broker.Prompter
	accept bool
	stdout io.Writer

	recorded        bool
	server, refused string
}

func (h *hostKeyAnswer) Ask(ctx context.Context, q broker.Question) (string, error) {
	if q.Kind != broker.HostKey {
		if h.inner == nil {
			return "", fmt.Errorf("no terminal or askpass to ask for the %s", q.Kind)
		}
		return h.inner.Ask(ctx, q)
	}
	h.server = q.Server
	if h.accept {
		fmt.Fprintf(h.stdout, "new host key of %s: %s; recording it (--accept)\n", q.Server, q.HostKey)
		h.recorded = true
		return "yes", nil
	}
	if _, ok := h.inner.(*prompt.Serial); ok {
		ans, err := h.inner.Ask(ctx, q)
		if a := strings.ToLower(strings.TrimSpace(ans)); err == nil && (a == "yes" || a == "y") {
			h.recorded = true
		} else if err == nil {
			h.refused = q.HostKey + " (you said no)"
		}
		return ans, err
	}
	h.refused = q.HostKey
	return "", errors.New("not accepted: no terminal to ask, and no --accept")
}

func hostPort(p *broker.Profile) string {
	if len(p.Hosts) == 0 {
		return "?"
	}
	return fmt.Sprintf("%s:%d", p.Hosts[0], p.Port)
}

func knownHostsFile(p *broker.Profile) string {
	if len(p.KnownHosts) == 0 {
		return "known_hosts"
	}
	return p.KnownHosts[0]
}

// describeProfile says where a profile goes and how, for shunt init.
func describeProfile(p *broker.Profile) string {
	parts := []string{"HostName " + strings.Join(p.Hosts, " "), fmt.Sprintf("Port %d", p.Port), "User " + p.User}
	for _, f := range p.IdentityFiles {
		parts = append(parts, "IdentityFile "+f)
	}
	if p.Jump != "" {
		parts = append(parts, "through "+p.Jump)
	}
	return strings.Join(parts, ", ")
}

// sshCommand is the ssh(1) command line that tries the same login.
func sshCommand(p *broker.Profile) string {
	var b strings.Builder
	if p.Port != 22 {
		fmt.Fprintf(&b, "-p %d ", p.Port)
	}
	for _, f := range p.IdentityFiles {
		fmt.Fprintf(&b, "-i %s ", f)
	}
	if len(p.KnownHosts) > 0 {
		fmt.Fprintf(&b, "-o UserKnownHostsFile=%s ", p.KnownHosts[0])
	}
	if len(p.Hosts) > 0 {
		fmt.Fprintf(&b, "%s@%s", p.User, p.Hosts[0])
	}
	return b.String()
}
