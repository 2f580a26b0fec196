package main

// The client commands: they ask a running shunt over its control socket.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/state"
)

const ctlUsage = `  shunt status [--watch] [--json]      show the profiles, prompts and flows of the running shunt
  shunt flows [--follow] [--json]      list its flows; --follow streams them as they open and close
  shunt reload [--reset-removed] [--json]
                                       have it read its configuration again
  shunt down [--no-wait] [--json]      have it stop (as SIGTERM does), and wait until it has
  shunt connect PROFILE [--json]       connect a profile now
  shunt disconnect PROFILE [--json]    close a profile's SSH connections
  shunt close FLOW-ID [--json]         reset a flow
  shunt auth [--wait] [PROFILE]        answer a pending password, passphrase or host-key prompt
                                       (from the terminal without echo, or a line of stdin)
  shunt console [--no-browser]         print the web console's URL with its login token, and
                                       open a browser on it

The client commands (status to console) find the running shunt's control
socket by --socket PATH, else $SHUNT_SOCKET, else /run/shunt/shunt.sock.`

// ctl runs a client command. Its fields are what the command uses of the
// process, so that tests can give their own.
type ctl struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// readSecret reads a line from the terminal without echo; nil when
	// stdin is not a terminal.
	readSecret func() ([]byte, error)
	// outTerminal tells that stdout is a terminal (status --watch then
	// redraws in place).
	outTerminal bool
	// browse opens a URL in a browser (shunt console); nil: never (tests).
	browse func(url string) error

	lines *bufio.Reader // stdin, read a line at a time
}

// runCtl runs client command cmd as the process.
func runCtl(cmd string, args []string, stdout, stderr io.Writer) int {
	c := &ctl{ctx: context.Background(), stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now, browse: browseURL}
	if fd := int(os.Stdin.Fd()); term.IsTerminal(fd) {
		c.readSecret = func() ([]byte, error) { return readPassword(fd, stderr) }
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.outTerminal = true
	}
	return c.run(cmd, args)
}

// readPassword reads a line from the terminal fd without echo. Ctrl-C
// gives the terminal its echo back before shunt exits.
func readPassword(fd int, stderr io.Writer) ([]byte, error) {
	if old, err := term.GetState(fd); err == nil {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt)
		done := make(chan struct{})
		defer func() { signal.Stop(sigs); close(done) }()
		go func() {
			select {
			case <-sigs:
				term.Restore(fd, old)
				fmt.Fprintln(stderr)
				os.Exit(130)
			case <-done:
			}
		}()
	}
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	return b, err
}

func (c *ctl) run(cmd string, args []string) int {
	switch cmd {
	case "status":
		return c.status(args)
	case "flows":
		return c.flows(args)
	case "reload":
		return c.reload(args)
	case "down":
		return c.down(args)
	case "connect", "disconnect":
		return c.profile(cmd, args)
	case "close":
		return c.closeFlow(args)
	case "auth":
		return c.auth(args)
	case "console":
		return c.console(args)
	}
	fmt.Fprintf(c.stderr, "shunt: unknown command %q\n", cmd)
	return 2
}

// ctlFlags are the flags every client command has.
type ctlFlags struct {
	socket string
	json   bool
}

// parse parses a client command's flags, before and after its positional
// arguments, which it returns; extra registers the command's own flags.
// Its error is parseFlags'.
func (c *ctl) parse(name string, args []string, extra func(*flag.FlagSet)) (*ctlFlags, []string, error) {
	fs := flag.NewFlagSet("shunt "+name, flag.ContinueOnError)
	cf := &ctlFlags{}
	fs.StringVar(&cf.socket, "socket", "", "the control socket's `path` (default $"+control.SocketEnv+", else "+control.DefaultSocket+")")
	fs.BoolVar(&cf.json, "json", false, "print JSON")
	if extra != nil {
		extra(fs)
	}
	var rest []string
	for {
		if err := parseFlags(fs, args, c.stdout, c.stderr); err != nil {
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

// client is a client of the socket the flags, else the environment, name.
func (c *ctl) client(cf *ctlFlags) *control.Client {
	socket := cf.socket
	if socket == "" {
		socket = c.getenv(control.SocketEnv)
	}
	if socket == "" && os.Geteuid() != 0 {
		// An ordinary user's shunt without a TUN listens in the user's
		// directories.
		if p := config.UserControlSocket(c.getenv); p != "" {
			if _, err := os.Stat(p); err == nil {
				socket = p
			}
		}
	}
	if socket == "" {
		socket = control.DefaultSocket
	}
	return &control.Client{Socket: socket}
}

// fail prints err, a line (a refused configuration's problems one a line),
// and returns the exit code 1.
func (c *ctl) fail(cmd string, err error) int {
	var ce *control.Error
	if errors.As(err, &ce) && len(ce.Problems) > 0 {
		fmt.Fprintf(c.stderr, "shunt %s: the configuration was refused, the old one stays in force:\n", cmd)
		for _, p := range ce.Problems {
			fmt.Fprintln(c.stderr, p)
		}
		return 1
	}
	fmt.Fprintf(c.stderr, "shunt %s: %v\n", cmd, err)
	return 1
}

func (c *ctl) printJSON(v any) {
	json.NewEncoder(c.stdout).Encode(v)
}

func (c *ctl) status(args []string) int {
	var watch bool
	var interval time.Duration
	cf, rest, err := c.parse("status", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&watch, "watch", false, "redraw until interrupted")
		fs.DurationVar(&interval, "interval", time.Second, "how often --watch redraws")
	})
	if err != nil || len(rest) > 0 || interval <= 0 {
		return usageExit(err, c.stderr, "usage: shunt status [--watch [--interval 1s]] [--json] [--socket PATH]")
	}
	client := c.client(cf)
	for first := true; ; first = false {
		st, err := client.Status(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return 0
			}
			return c.fail("status", err)
		}
		switch {
		case cf.json:
			c.printJSON(contractStatus(st))
		case watch && c.outTerminal:
			// Home, then clear to the end: the new frame replaces the old.
			fmt.Fprint(c.stdout, "\x1b[H\x1b[2J")
			c.printStatus(c.stdout, st)
		default:
			if !first {
				fmt.Fprintln(c.stdout)
			}
			c.printStatus(c.stdout, st)
		}
		if !watch {
			return 0
		}
		select {
		case <-c.ctx.Done():
			return 0
		case <-time.After(interval):
		}
	}
}

// contractStatus is status --json's output: the snapshot, with every list
// the contract names present, [] when empty.
func contractStatus(st state.Status) state.Status {
	if st.Profiles == nil {
		st.Profiles = []state.Profile{}
	}
	if st.Flows == nil {
		st.Flows = []state.Flow{}
	}
	if st.Prompts == nil {
		st.Prompts = []state.Prompt{}
	}
	return st
}

// printStatus prints the profiles, the prompts waiting for an answer, then
// the flows, as tables.
func (c *ctl) printStatus(w io.Writer, st state.Status) {
	switch {
	case st.Capture:
		fmt.Fprintln(w, "capture: on")
	case st.NoTUN:
		fmt.Fprintln(w, "capture: none (tun.enabled: false): only the listeners")
	default:
		fmt.Fprintln(w, "capture: off (shunt is starting, or stopping)")
	}
	for _, l := range st.Listeners {
		what := map[string]string{"socks": "SOCKS proxy", "http": "HTTP proxy", "static": "static tunnel"}[l.Kind]
		if l.Kind == "static" {
			what += " to " + l.Destination + " through " + l.Profile
		}
		from := "loopback"
		if len(l.AllowFrom) > 0 {
			from += ", " + strings.Join(l.AllowFrom, ", ")
		}
		fmt.Fprintf(w, "listening: %s at %s (clients from %s): %d clients, %d refused by allow_from\n", what, l.Listen, from, l.Clients, l.Denied)
	}
	if d := st.DNS; d != nil {
		up := "no upstream"
		if len(d.Upstreams) > 0 {
			up = "forwarding to " + strings.Join(d.Upstreams, ", ")
		}
		q := d.Queries
		fmt.Fprintf(w, "dns: %s, at %s, %s; %d names with fake addresses; queries: %d fake, %d forwarded, %d through the tunnel, %d failed, %d refused\n",
			d.Mode, strings.Join(d.Servers, " and "), up, d.Names, q.Fake, q.Forwarded, q.Through, q.Failed, q.Refused)
	}
	fmt.Fprintln(w)
	if len(st.Profiles) == 0 {
		fmt.Fprintln(w, "no profiles")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROFILE\tSTATE\tSERVER\tROUTE\tCONNECTIONS\tCHANNELS\tSENT\tRECEIVED\tRECONNECTS\tSINCE\tERROR")
		for _, p := range st.Profiles {
			name := p.Name
			if p.Via != "" {
				name += " via " + p.Via
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", name, p.State, dash(p.Server), dash(p.Route),
				p.Connections, p.Channels, byteCount(p.Sent), byteCount(p.Received), p.Reconnects, c.age(p.Since), dash(p.Error))
		}
		tw.Flush()
	}
	if len(st.Prompts) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "waiting for an answer (shunt auth PROFILE):")
		for _, p := range st.Prompts {
			fmt.Fprintf(w, "  %s: %s: %s\n", p.Profile, p.Kind, oneLine(p.Message))
		}
	}
	fmt.Fprintln(w)
	c.printFlows(w, st.Flows)
}

func (c *ctl) printFlows(w io.Writer, flows []state.Flow) {
	if len(flows) == 0 {
		fmt.Fprintln(w, "no flows")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAPP\tUID\tSOURCE\tDESTINATION\tRULE\tACTION\tPROFILE\tSTATE\tSENT\tRECEIVED\tAGE")
	for _, f := range flows {
		src := f.Src
		if f.Via != "" {
			src += " via " + f.Via
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, app(f.App), uid(f.UID), src, destination(f),
			dash(f.Rule), f.Action, dash(f.Profile), dash(f.State), byteCount(f.Sent), byteCount(f.Received), c.age(f.Started))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func app(path string) string {
	if path == "" {
		return "-"
	}
	return filepath.Base(path)
}

func uid(n int) string {
	if n < 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

func destination(f state.Flow) string {
	if f.Name == "" {
		return f.Dst
	}
	return f.Name + " (" + f.Dst + ")"
}

// oneLine keeps a server's multi-line message on one table line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// age is how long ago t was, to the second.
func (c *ctl) age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return max(c.now().Sub(t), 0).Truncate(time.Second).String()
}

// byteCount is n in bytes, KiB, MiB, GiB or TiB.
func byteCount(n int64) string {
	if n < 1024 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= 1024
		if v < 1024 || unit == "TiB" {
			return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
		}
	}
	panic("unreachable")
}

func (c *ctl) flows(args []string) int {
	var follow bool
	cf, rest, err := c.parse("flows", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&follow, "follow", false, "print the flows as they open and close, until shunt stops or you interrupt")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, c.stderr, "usage: shunt flows [--follow] [--json] [--socket PATH]")
	}
	client := c.client(cf)
	if !follow {
		flows, err := client.Flows(c.ctx)
		if err != nil {
			return c.fail("flows", err)
		}
		if cf.json {
			if flows == nil {
				flows = []state.Flow{}
			}
			c.printJSON(struct {
				Flows []state.Flow `json:"flows"`
			}{flows})
			return 0
		}
		c.printFlows(c.stdout, flows)
		return 0
	}
	events, err := client.Events(c.ctx)
	if err != nil {
		return c.fail("flows", err)
	}
	defer events.Close()
	for {
		ev, err := events.Next()
		if err != nil {
			if c.ctx.Err() != nil {
				return 0
			}
			if errors.Is(err, io.EOF) {
				fmt.Fprintln(c.stderr, "shunt flows: shunt stopped")
				return 0
			}
			return c.fail("flows", fmt.Errorf("the event stream broke off: %w", err))
		}
		if ev.Flow == nil || (ev.Event != state.EventOpen && ev.Event != state.EventClose) {
			continue
		}
		if cf.json {
			c.printJSON(flowEvent(ev))
		} else {
			fmt.Fprintln(c.stdout, flowEventLine(ev))
		}
	}
}

// flowEventJSON is a line of flows --follow --json: the event, with the
// flow's fields at the top level.
type flowEventJSON struct {
	Event string    `json:"event"`
	Time  time.Time `json:"time"`
	state.Flow
	Reason string `json:"reason,omitempty"`
	// Duration is a closed flow's life, in seconds.
	Duration float64 `json:"duration,omitempty"`
}

func flowEvent(ev state.Event) flowEventJSON {
	return flowEventJSON{Event: ev.Event, Time: ev.Time, Flow: *ev.Flow, Reason: ev.Reason, Duration: ev.Duration.Seconds()}
}

// flowEventLine is a line of flows --follow.
func flowEventLine(ev state.Event) string {
	f := ev.Flow
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %d %s", ev.Time.Format("15:04:05"), ev.Event, f.ID, app(f.App))
	if f.UID >= 0 {
		fmt.Fprintf(&b, " (uid %d)", f.UID)
	}
	fmt.Fprintf(&b, " %s -> %s: ", f.Src, destination(*f))
	if f.Rule != "" {
		b.WriteString(f.Rule + ": ")
	}
	b.WriteString(f.Action)
	if f.Profile != "" {
		b.WriteString(" via " + f.Profile)
	}
	if ev.Event == state.EventClose {
		fmt.Fprintf(&b, "; sent %s, received %s in %s", byteCount(f.Sent), byteCount(f.Received), ev.Duration.Truncate(time.Millisecond))
		if ev.Reason != "" {
			b.WriteString(": " + ev.Reason)
		}
	}
	return b.String()
}

func (c *ctl) reload(args []string) int {
	var opts control.ReloadOptions
	cf, rest, err := c.parse("reload", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&opts.ResetRemoved, "reset-removed", false, "reset the running flows of profiles the new configuration removes or changes (default: they run on until they end)")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, c.stderr, "usage: shunt reload [--reset-removed] [--json] [--socket PATH]")
	}
	if err := c.client(cf).ReloadWith(c.ctx, opts); err != nil {
		return c.fail("reload", err)
	}
	if cf.json {
		c.printJSON(control.Reloaded{Reloaded: true})
	} else {
		fmt.Fprintln(c.stdout, "shunt read its configuration again")
	}
	return 0
}

func (c *ctl) down(args []string) int {
	var noWait bool
	cf, rest, err := c.parse("down", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noWait, "no-wait", false, "return once shunt has begun to stop")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, c.stderr, "usage: shunt down [--no-wait] [--json] [--socket PATH]")
	}
	client := c.client(cf)
	// Subscribed before the stop, the stream ends when shunt has gone.
	var events *control.EventStream
	if !noWait {
		if events, err = client.Events(c.ctx); err != nil {
			return c.fail("down", err)
		}
		defer events.Close()
	}
	if err := client.Down(c.ctx); err != nil {
		return c.fail("down", err)
	}
	if noWait {
		if cf.json {
			c.printJSON(control.Stopping{Stopping: true})
		} else {
			fmt.Fprintln(c.stdout, "shunt is stopping: running flows get shutdown_grace to finish")
		}
		return 0
	}
	if !cf.json {
		fmt.Fprintln(c.stdout, "shunt is stopping: running flows get shutdown_grace to finish")
	}
	for {
		if _, err := events.Next(); err != nil {
			break
		}
	}
	if c.ctx.Err() != nil {
		return 1
	}
	if cf.json {
		c.printJSON(struct {
			Stopped bool `json:"stopped"`
		}{true})
	} else {
		fmt.Fprintln(c.stdout, "shunt has stopped")
	}
	return 0
}

func (c *ctl) profile(cmd string, args []string) int {
	cf, rest, err := c.parse(cmd, args, nil)
	if err != nil || len(rest) != 1 {
		return usageExit(err, c.stderr, "usage: shunt "+cmd+" PROFILE [--json] [--socket PATH]")
	}
	client := c.client(cf)
	do := client.Connect
	if cmd == "disconnect" {
		do = client.Disconnect
	}
	p, err := do(c.ctx, rest[0])
	if err != nil {
		return c.fail(cmd, err)
	}
	if cf.json {
		c.printJSON(p)
		return 0
	}
	fmt.Fprintln(c.stdout, profileLine(p))
	return 0
}

// profileLine says a profile's state in a line: "office: connected to
// gw:22 (direct)".
func profileLine(p state.Profile) string {
	s := p.Name + ": " + p.State
	if p.Server != "" {
		s += " to " + p.Server
	}
	if p.Route != "" {
		s += " (" + p.Route + ")"
	}
	if p.Error != "" {
		s += "; last error: " + p.Error
	}
	return s
}

func (c *ctl) closeFlow(args []string) int {
	cf, rest, err := c.parse("close", args, nil)
	if err != nil || len(rest) != 1 {
		return usageExit(err, c.stderr, "usage: shunt close FLOW-ID [--json] [--socket PATH]")
	}
	id, err := control.ParseFlowID(rest[0])
	if err != nil {
		fmt.Fprintf(c.stderr, "shunt close: %v\n", err)
		return 2
	}
	if err := c.client(cf).CloseFlow(c.ctx, id); err != nil {
		return c.fail("close", err)
	}
	if cf.json {
		c.printJSON(control.Closed{Closed: id})
	} else {
		fmt.Fprintf(c.stdout, "flow %d reset\n", id)
	}
	return 0
}

func (c *ctl) auth(args []string) int {
	var wait bool
	cf, rest, err := c.parse("auth", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&wait, "wait", false, "wait for a prompt when none is pending")
	})
	if err != nil || len(rest) > 1 {
		return usageExit(err, c.stderr, "usage: shunt auth [--wait] [PROFILE] [--json] [--socket PATH]")
	}
	profile := ""
	if len(rest) == 1 {
		profile = rest[0]
	}
	client := c.client(cf)
	var events *control.EventStream
	if wait {
		// Subscribed before the list is read, no prompt is missed.
		if events, err = client.Events(c.ctx); err != nil {
			return c.fail("auth", err)
		}
		defer events.Close()
	}
	prompts, err := client.Prompts(c.ctx)
	if err != nil {
		return c.fail("auth", err)
	}
	prompts = slices.DeleteFunc(prompts, func(p state.Prompt) bool { return profile != "" && p.Profile != profile })
	for len(prompts) == 0 && wait {
		ev, err := events.Next()
		if err != nil {
			return c.fail("auth", fmt.Errorf("shunt stopped before a prompt came: %w", err))
		}
		if ev.Event == state.EventPrompt && ev.Prompt != nil && (profile == "" || ev.Prompt.Profile == profile) {
			prompts = append(prompts, *ev.Prompt)
		}
	}
	if len(prompts) == 0 {
		if profile != "" {
			return c.fail("auth", fmt.Errorf("no prompt of profile %q is pending (shunt auth --wait waits for one)", profile))
		}
		return c.fail("auth", errors.New("no prompt is pending (shunt auth --wait waits for one)"))
	}
	p, err := c.choosePrompt(prompts, profile)
	if err != nil {
		return c.fail("auth", err)
	}
	answer, err := c.readAnswer(p)
	if err != nil {
		return c.fail("auth", err)
	}
	if err := client.Answer(c.ctx, p.ID, answer); err != nil {
		return c.fail("auth", err)
	}
	if cf.json {
		c.printJSON(control.Answered{Answered: p.ID})
	} else {
		fmt.Fprintf(c.stdout, "answered the %s prompt of profile %s\n", p.Kind, p.Profile)
	}
	return 0
}

// choosePrompt picks the prompt to answer: the only one; the oldest when
// all are the named profile's; else the one chosen at the terminal.
func (c *ctl) choosePrompt(prompts []state.Prompt, profile string) (state.Prompt, error) {
	slices.SortStableFunc(prompts, func(a, b state.Prompt) int { return a.Created.Compare(b.Created) })
	if len(prompts) == 1 || profile != "" {
		return prompts[0], nil
	}
	if c.readSecret == nil {
		var names []string
		for _, p := range prompts {
			if !slices.Contains(names, p.Profile) {
				names = append(names, p.Profile)
			}
		}
		if len(names) == 1 {
			return prompts[0], nil
		}
		return state.Prompt{}, fmt.Errorf("prompts of several profiles are pending: name one (shunt auth PROFILE): %s", strings.Join(names, ", "))
	}
	fmt.Fprintln(c.stderr, "Prompts pending:")
	for i, p := range prompts {
		fmt.Fprintf(c.stderr, "  %d) %s: %s: %s\n", i+1, p.Profile, p.Kind, oneLine(p.Message))
	}
	fmt.Fprintf(c.stderr, "Which one (1-%d)? ", len(prompts))
	line, err := c.readLine()
	if err != nil {
		return state.Prompt{}, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || n < 1 || n > len(prompts) {
		return state.Prompt{}, fmt.Errorf("%q is not one of 1 to %d", strings.TrimSpace(line), len(prompts))
	}
	return prompts[n-1], nil
}

// readAnswer reads p's answer: at the terminal, after its message, without
// echo unless the prompt may be echoed; else a line of stdin.
func (c *ctl) readAnswer(p state.Prompt) (string, error) {
	if c.readSecret == nil {
		line, err := c.readLine()
		if err != nil {
			return "", fmt.Errorf("no answer on stdin: %w", err)
		}
		return line, nil
	}
	msg := strings.TrimRight(p.Message, " \n")
	fmt.Fprintf(c.stderr, "%s: %s ", p.Profile, msg)
	if p.Echo {
		return c.readLine()
	}
	b, err := c.readSecret()
	if err != nil {
		return "", fmt.Errorf("reading the answer: %w", err)
	}
	return string(b), nil
}

// readLine reads a line of stdin, without its line ending; a last line
// without one counts, an empty input is io.EOF.
func (c *ctl) readLine() (string, error) {
	if c.lines == nil {
		c.lines = bufio.NewReader(c.stdin)
	}
	line, err := c.lines.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		return "", err
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
