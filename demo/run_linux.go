package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/state"
)

// Options are shunt demo's.
type Options struct {
	// Keep leaves the world running and prints commands to try.
	Keep bool
	// Gateway is "auto" (OpenSSH's sshd when on PATH, else the built-in
	// shunt gateway), "sshd" or "builtin".
	Gateway string
	// Exe is the shunt binary, re-executed in the namespaces.
	Exe            string
	Stdout, Stderr io.Writer
}

func worldDir(id string) string { return filepath.Join(os.TempDir(), nsPrefix+id) }
func logDir(id string) string   { return filepath.Join(os.TempDir(), nsPrefix+id+"-logs") }

// Down removes the demo worlds that no running demo owns (all kept ones),
// or only world id when given; it returns how many it removed.
func Down(id string, stdout io.Writer) (int, error) {
	n := 0
	var errs []error
	for _, w := range worlds() {
		if id != "" && w != id {
			continue
		}
		if id == "" && ownerAlive(w) {
			continue
		}
		if err := removeWorld(w); err != nil {
			errs = append(errs, err)
		}
		os.RemoveAll(logDir(w))
		fmt.Fprintf(stdout, "removed demo world %s\n", w)
		n++
	}
	return n, errors.Join(errs...)
}

// ownerAlive tells whether the demo that built world id still runs (and
// will remove it), or kept it on purpose.
func ownerAlive(id string) bool {
	b, err := os.ReadFile(filepath.Join(worldDir(id), "owner"))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) >= 2 && f[1] == "keep" {
		return true
	}
	pid, err := strconv.Atoi(f[0])
	return err == nil && syscall.Kill(pid, 0) == nil
}

// Run runs the demo and returns the exit status: 0 when every step worked.
func Run(o Options) int {
	out, errw := o.Stdout, o.Stderr
	if os.Geteuid() != 0 {
		fmt.Fprintln(errw, "shunt demo needs root (network namespaces, a TUN device): run it with sudo.")
		return 1
	}
	// What a crashed earlier demo left; kept worlds stay (shunt demo --down).
	for _, w := range worlds() {
		if !ownerAlive(w) {
			removeWorld(w)
			os.RemoveAll(logDir(w))
			fmt.Fprintf(out, "(removed what an earlier demo, %s, left behind)\n", w)
		}
	}
	idb := make([]byte, 3)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	d := &run{o: o, id: id, dir: worldDir(id), logs: logDir(id)}
	ok := false
	defer func() {
		if o.Keep && ok {
			return
		}
		d.teardown()
		if ok {
			os.RemoveAll(d.logs)
		} else {
			fmt.Fprintf(errw, "The logs are in %s (shunt's own: %s).\n", d.logs, filepath.Join(d.logs, "shunt.log"))
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A closed output (demo | head) must not kill the demo before it
	// has removed its world.
	signal.Ignore(syscall.SIGPIPE)
	d.ctx = ctx
	err := d.run()
	if ctx.Err() != nil {
		fmt.Fprintln(out, "\nInterrupted: removing the demo world.")
		ok, o.Keep = true, false // nothing to report: remove everything
		return 130
	}
	if err != nil {
		fmt.Fprintf(errw, "shunt demo: %v\n", err)
		return 1
	}
	if !d.allOK {
		fmt.Fprintln(out, "\nNot every step worked (see above).")
		return 1
	}
	ok = true
	if o.Keep {
		d.printKeep()
		return 0
	}
	fmt.Fprintln(out, "\nEvery step worked. The demo world is removed; run shunt demo --keep to try it by hand.")
	return 0
}

type run struct {
	o              Options
	ctx            context.Context
	id, dir, logs  string
	w              *world
	gatewayKind    string
	socket, config string
	procs          []*proc
	allOK          bool
	cl             *control.Client

	mu     sync.Mutex
	events []state.Event
}

func (d *run) teardown() {
	// The processes first, politely (shunt removes its routes and TUN),
	// then whatever is left in the namespaces, and the namespaces.
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	removeWorld(d.id)
}

func (d *run) say(format string, args ...any) { fmt.Fprintf(d.o.Stdout, format+"\n", args...) }

func (d *run) run() error {
	for _, dir := range []string{d.dir, d.logs} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	owner := strconv.Itoa(os.Getpid())
	if d.o.Keep {
		owner += " building"
	}
	os.WriteFile(filepath.Join(d.dir, "owner"), []byte(owner+"\n"), 0o600)

	sshd, err := d.pickGateway()
	if err != nil {
		return err
	}
	d.say("shunt demo: building a small world in network namespaces (id %s)", d.id)
	w, err := buildWorld(d.id)
	if err != nil {
		return err
	}
	d.w = w
	gwDesc := "the built-in SSH gateway (shunt gateway)"
	if sshd != "" {
		gwDesc = "OpenSSH's sshd (" + sshd + ")"
	}
	d.say("  client    %-27s runs shunt (namespace %s)", clientAddr, nsName(d.id, "c"))
	d.say("  gateway   %-27s runs %s", gatewayOuter+", "+gatewayInner, gwDesc)
	d.say("  internal  %-27s a web page and a download (:80), a mail-like service (:25), telnet (:23)", internalAddr)
	d.say("  The client reaches the internal network only through the gateway's SSH server.")

	// Keys, known_hosts and the gateway.
	hostKey := filepath.Join(d.dir, "host_ed25519_key")
	clientKey := filepath.Join(d.dir, "id_ed25519")
	hostLine, err := writeKey(hostKey, "demo-gateway")
	if err != nil {
		return err
	}
	clientLine, err := writeKey(clientKey, "demo-client")
	if err != nil {
		return err
	}
	auth := filepath.Join(d.dir, "authorized_keys")
	knownHosts := filepath.Join(d.dir, "known_hosts")
	if err := os.WriteFile(auth, []byte(clientLine), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(knownHosts, []byte(gatewayOuter+" "+hostLine), 0o600); err != nil {
		return err
	}

	if err := d.startProc(w.internal, "services", d.o.Exe, "demo-node", "services"); err != nil {
		return err
	}
	if err := d.waitDial(w.gateway, net.JoinHostPort(internalAddr, strconv.Itoa(portWeb)), "the internal services"); err != nil {
		return err
	}
	if sshd != "" {
		cfg := filepath.Join(d.dir, "sshd_config")
		lines := []string{
			"ListenAddress " + gatewayOuter, "HostKey " + hostKey, "PidFile none",
			"AuthorizedKeysFile " + auth, "PubkeyAuthentication yes", "PasswordAuthentication no",
			"KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no",
			"UsePAM no", "AllowTcpForwarding yes", "PermitOpen " + internalAddr + ":*", "LogLevel VERBOSE",
		}
		if err := os.WriteFile(cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return err
		}
		os.MkdirAll("/run/sshd", 0o755) // its privilege separation directory
		if err := d.startProc(w.gateway, "gateway", sshd, "-D", "-e", "-f", cfg); err != nil {
			return err
		}
	} else {
		if err := d.startProc(w.gateway, "gateway", d.o.Exe, "gateway", "--listen", gatewayOuter+":22",
			"--host-key", hostKey, "--authorized-keys", auth, "--permit", internalNet, "--log-level", "info"); err != nil {
			return err
		}
	}
	if err := d.waitDial(w.client, gatewayOuter+":22", "the SSH gateway"); err != nil {
		return err
	}

	// shunt, in the client.
	d.socket = filepath.Join(d.dir, "shunt.sock")
	d.config = filepath.Join(d.dir, "shunt.yaml")
	if err := os.WriteFile(d.config, []byte(d.configText(clientKey, knownHosts)), 0o600); err != nil {
		return err
	}
	d.say("\nRules (%s):", d.config)
	d.say("  #1 no-telnet  %s port %d  block: the application sees \"connection refused\"", internalNet, portTelnet)
	d.say("  #2 internal   %s          tunnel through profile \"gateway\" (SSH to %s)", internalNet, gatewayOuter)
	if err := d.startProc(w.client, "shunt", d.o.Exe, "up", "--global", "", "--user-config", "", "--config", d.config); err != nil {
		return err
	}
	cl := &control.Client{Socket: d.socket}
	d.cl = cl
	if err := d.waitFor("shunt to start capturing", func() bool {
		st, err := cl.Status(d.ctx)
		return err == nil && st.Capture
	}); err != nil {
		return err
	}
	evs, err := cl.Events(d.ctx)
	if err != nil {
		return fmt.Errorf("following shunt's events: %w", err)
	}
	go func() {
		defer evs.Close()
		for {
			e, err := evs.Next()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.events = append(d.events, e)
			d.mu.Unlock()
		}
	}()
	d.say("\nshunt is up in the client. Now, from the client's side:")
	return d.steps()
}

func (d *run) configText(key, knownHosts string) string {
	return fmt.Sprintf(`# shunt demo %s: written by shunt demo.
profiles:
  - name: gateway
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
rules:
  - name: no-telnet
    destinations: [%s]
    ports: [%d]
    action: block
  - name: internal
    destinations: [%s]
    action: tunnel
    profile: gateway
tun:
  name: shd%st
control:
  socket: %s
log:
  level: info
`, d.id, gatewayOuter, key, knownHosts, internalNet, portTelnet, internalNet, d.id, d.socket)
}

// pickGateway returns sshd's path when the demo uses OpenSSH, else "".
func (d *run) pickGateway() (string, error) {
	switch d.o.Gateway {
	case "", "auto":
		if p, err := exec.LookPath("sshd"); err == nil {
			return p, nil
		}
		return "", nil
	case "sshd":
		p, err := exec.LookPath("sshd")
		if err != nil {
			return "", errors.New("--gateway sshd: no sshd on PATH (install openssh-server, or use --gateway builtin)")
		}
		return p, nil
	case "builtin":
		return "", nil
	}
	return "", fmt.Errorf("--gateway %q: want auto, sshd or builtin", d.o.Gateway)
}

// proc is a process the demo started.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// logTail returns the last lines of a process's log, indented, for an
// error message.
func (d *run) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(d.logs, name+".log"))
	if len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return "; its log ends:\n    " + strings.Join(lines, "\n    ")
}

// exited returns an error naming the first process that exited, nil
// while all run.
func (d *run) exited() error {
	for _, p := range d.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited early (%v)%s", p.name, p.cmd.ProcessState, d.logTail(p.name))
		default:
		}
	}
	return nil
}

func (d *run) startProc(h netns.NsHandle, name, prog string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(d.logs, name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(prog, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := start(h, cmd); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	d.procs = append(d.procs, p)
	return nil
}

func (d *run) waitDial(h netns.NsHandle, addr, what string) error {
	return d.waitFor(what, func() bool {
		ctx, cancel := context.WithTimeout(d.ctx, time.Second)
		defer cancel()
		c, err := dial(ctx, h, addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitFor polls cond for up to 20 seconds.
func (d *run) waitFor(what string, cond func() bool) error {
	return d.waitForFor(20*time.Second, what, cond)
}

func (d *run) waitForFor(limit time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if d.ctx.Err() != nil {
			return d.ctx.Err()
		}
		if err := d.exited(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waited %v for %s in vain", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *run) httpClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dial(ctx, d.w.client, addr)
			},
		},
	}
}

func (d *run) steps() error {
	web := net.JoinHostPort(internalAddr, strconv.Itoa(portWeb))
	var steps []Step

	// 1. The web page.
	s := Step{Name: "Web request", Dst: web}
	if resp, err := d.httpClient().Get("http://" + web + "/"); err != nil {
		s.Err = err
	} else {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			s.Err = err
		case resp.StatusCode != 200 || string(body) != page:
			s.Err = fmt.Errorf("got %s and %d bytes, not the page", resp.Status, len(body))
		default:
			s.Detail = "GET / gave 200 OK and the page"
		}
	}
	steps = append(steps, d.report(s))

	// 2. The download, with shunt status shown while it runs.
	s = Step{Name: "Download", Dst: web}
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := d.httpClient().Get("http://" + web + "/download")
		if err != nil {
			s.Err = err
			return
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			s.Err = err
			return
		}
		if want := downloadSum(); !bytes.Equal(h.Sum(nil), want[:]) {
			s.Err = fmt.Errorf("%d bytes whose sha256 differs from the server's", n)
			return
		}
		s.Detail = fmt.Sprintf("%s, sha256 matched", size(n))
	}()
	select {
	case <-done:
	case <-time.After(600 * time.Millisecond):
		d.say("\n  While the download runs, shunt status --socket %s says:", d.socket)
		d.showStatus()
	}
	<-done
	steps = append(steps, d.report(s))

	// 3. The mail-like service, which speaks first.
	mail := net.JoinHostPort(internalAddr, strconv.Itoa(portMail))
	s = Step{Name: "Mail banner", Dst: mail}
	if c, err := dial(d.ctx, d.w.client, mail); err != nil {
		s.Err = err
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		l, err := r.ReadString('\n')
		if err == nil {
			_, err = io.WriteString(c, "QUIT\r\n")
		}
		if err == nil {
			_, err = r.ReadString('\n')
		}
		c.Close()
		switch {
		case err != nil:
			s.Err = err
		case strings.TrimSpace(l) != banner:
			s.Err = fmt.Errorf("the server's first line was %q", l)
		default:
			s.Detail = fmt.Sprintf("the server spoke first: %q", banner)
		}
	}
	steps = append(steps, d.report(s))

	// 4. The blocked connection.
	telnet := net.JoinHostPort(internalAddr, strconv.Itoa(portTelnet))
	s = Step{Name: "Telnet (blocked)", Dst: telnet, WantRefused: true}
	if c, err := dial(d.ctx, d.w.client, telnet); err != nil {
		s.Err = err
	} else {
		c.Close()
		s.Detail = "it connected"
	}
	steps = append(steps, d.report(s))

	d.allOK = true
	for _, s := range steps {
		d.allOK = d.allOK && s.OK()
	}
	return nil
}

// report waits for the step's flow to close in shunt's events, and prints
// the step's outcome and explanation.
func (d *run) report(s Step) Step {
	var ev *state.Event
	d.waitForFor(5*time.Second, "", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		ev = FindFlow(d.events, s.Dst)
		if ev != nil {
			e := *ev
			ev = &e
			d.events = nil // the next step's flow to the same port is its own
		}
		return ev != nil
	})
	if ev != nil && ev.Flow != nil && ev.Flow.Server == "" && ev.Flow.Action == "tunnel" {
		// The profile's server, when the flow's event left it out.
		if st, err := d.cl.Status(d.ctx); err == nil {
			for _, p := range st.Profiles {
				if p.Name == ev.Flow.Profile && !p.Retired {
					ev.Flow.Server = p.Server
				}
			}
		}
	}
	mark := "✓"
	if !s.OK() {
		mark = "✗"
	}
	what := s.Detail
	if s.Err != nil {
		what = s.Err.Error()
	}
	d.say("\n%s %s: %s", mark, s.Name, what)
	d.say("  %s", Explain(s, ev))
	return s
}

func (d *run) showStatus() {
	cmd := exec.CommandContext(d.ctx, d.o.Exe, "status", "--socket", d.socket)
	b, _ := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		d.say("    %s", l)
	}
}

func (d *run) printKeep() {
	os.WriteFile(filepath.Join(d.dir, "owner"), []byte(strconv.Itoa(os.Getpid())+" keep\n"), 0o600)
	c := nsName(d.id, "c")
	d.say(`
The demo world %[1]s stays up. Try, as root:
  sudo ip netns exec %[2]s curl http://%[3]s/                 # tunnelled
  sudo ip netns exec %[2]s curl -o /dev/null http://%[3]s/download
  sudo ip netns exec %[2]s nc %[3]s 25                         # the banner comes first
  sudo ip netns exec %[2]s nc -v %[3]s 23                      # refused: rule no-telnet
  sudo shunt status --socket %[4]s
  sudo shunt flows --follow --socket %[4]s
  sudo ip netns exec %[2]s shunt explain --global "" --user-config "" --config %[5]s %[3]s:23
Its logs are in %[6]s. Remove it with:
  sudo shunt demo --down %[1]s`, d.id, c, internalAddr, d.socket, d.config, d.logs)
}
