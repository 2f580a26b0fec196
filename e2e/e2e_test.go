//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/internal/testns"
)

var shuntBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shunt-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shuntBin = filepath.Join(dir, "shunt")
	build := exec.Command("go", "build", "-race", "-o", shuntBin, "../cmd/shunt")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shunt:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	// Which tests the machine could not run, and why: ok alone would
	// read as a pass of the end-to-end suite.
	testns.Report(os.Stderr, true)
	os.Exit(code)
}

// shunt is a running `shunt up`.
type shunt struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan error
	socket string // its control socket
}

// socketConfig is a configuration file that puts the control socket in
// a directory of the test's own (never the machine's default, which
// another shunt may hold), and the socket's path. state_dir (the fake-IP
// table, the backup of resolv.conf) is the test's own too.
func socketConfig(t *testing.T) (socket, file string) {
	t.Helper()
	dir := t.TempDir()
	socket = filepath.Join(dir, "shunt.sock")
	file = filepath.Join(dir, "control.yaml")
	if err := os.WriteFile(file, []byte("control:\n  socket: "+socket+"\nstate_dir: "+filepath.Join(dir, "state")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return socket, file
}

func startShunt(t *testing.T, topo *topology, config string) *shunt {
	t.Helper()
	return startShuntEnv(t, topo, config)
}

// startShuntEnv starts shunt with more environment variables.
func startShuntEnv(t *testing.T, topo *topology, config string, env ...string) *shunt {
	t.Helper()
	return startShuntWith(t, topo, config, shuntOptions{env: env})
}

// startShuntVia starts shunt through a program that then execs it (such
// as setpriv with its options), with more environment variables.
func startShuntVia(t *testing.T, topo *topology, config string, via []string, env ...string) *shunt {
	t.Helper()
	return startShuntWith(t, topo, config, shuntOptions{env: env, wrap: via})
}

// startShuntBin starts the shunt binary bin (startShuntEnv's is the race
// detector's build).
func startShuntBin(t *testing.T, topo *topology, bin, config string, env ...string) *shunt {
	t.Helper()
	return startShuntWith(t, topo, config, shuntOptions{env: env, bin: bin})
}

// shuntOptions are what a test adds to the usual `shunt up`.
type shuntOptions struct {
	env  []string // more environment variables
	args []string // more arguments to up (e.g. --pprof)
	// wrap comes before shunt on the command line, inside the client
	// namespace: a program that sets something up and execs the rest
	// (prlimit --nofile=64:64, say), so the PID stays shunt's.
	wrap []string
	bin  string // the shunt binary; shuntBin, built with -race, if empty
}

// startShuntWith starts shunt up with o's additions and waits until it is up.
func startShuntWith(t *testing.T, topo *topology, config string, o shuntOptions) *shunt {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &shunt{log: &syncBuffer{}, done: make(chan error, 1)}
	var ctl string
	s.socket, ctl = socketConfig(t)
	bin := shuntBin
	if o.bin != "" {
		bin = o.bin
	}
	args := append([]string{}, o.wrap...)
	args = append(append(args, bin, "up", "--global", "", "--user-config", "", "--config", ctl, "--config", path), o.args...)
	s.cmd = topo.client.command(args...)
	// Never a developer's agent, and never the developer's identity
	// under sudo: shunt acts for root, the user the tests' clients run as.
	s.cmd.Env = append(append(os.Environ(), "SSH_AUTH_SOCK=", "SUDO_USER="), o.env...)
	s.run(t)
	return s
}

// run starts s.cmd with its output in s.log, kills it when the test ends
// (logging its output if the test failed), and waits until it is up.
func (s *shunt) run(t *testing.T) {
	t.Helper()
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			logShuntLog(t, s.log.String())
		}
	})
	deadline := time.After(20 * time.Second)
	for !strings.Contains(s.log.String(), "shunt is up") {
		select {
		case err := <-s.done:
			t.Fatalf("shunt exited before it was up: %v\n%s", err, s.log)
		case <-deadline:
			t.Fatalf("shunt not up after 20 s:\n%s", s.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logShuntLog puts a failed test's shunt log where it helps. A short one
// goes into the test's output whole. A long one (a load test logs a line
// per flow) goes whole into shunt.log in the test's artifact directory
// (kept under go test -artifacts), and into the output only its warnings
// and errors and its last lines: the test's own messages, above it, then
// stay near the end of go test's output, the part CI shows.
func logShuntLog(t *testing.T, log string) {
	const keep = 40
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	if len(lines) <= 2*keep {
		t.Logf("shunt log:\n%s", log)
		return
	}
	where := filepath.Join(t.ArtifactDir(), "shunt.log")
	if err := os.WriteFile(where, []byte(log), 0o644); err != nil {
		where = "nowhere: " + err.Error()
	}
	earlier := lines[:len(lines)-keep]
	var notable []string
	for _, l := range earlier {
		for _, level := range []string{"level=warning", "level=error", "level=fatal", "level=panic"} {
			if strings.Contains(l, level) {
				notable = append(notable, l)
				break
			}
		}
	}
	found := len(notable)
	if found > keep {
		notable = append(notable[:keep/2:keep/2], append([]string{"\t..."}, notable[found-keep/2:]...)...)
	}
	t.Logf("shunt log: %d lines, whole in %s\n%d warnings and errors before its last %d lines:\n%s\nits last %d lines:\n%s",
		len(lines), where, found, keep, strings.Join(notable, "\n"), keep, strings.Join(lines[len(lines)-keep:], "\n"))
}

// stop sends SIGTERM and waits for a clean exit.
func (s *shunt) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("shunt exited with %v after SIGTERM:\n%s", err, s.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("shunt did not stop within 20 s of SIGTERM:\n%s", s.log)
	}
}

// kill ends shunt as a crash would: nothing gets cleaned up.
func (s *shunt) kill() {
	s.cmd.Process.Kill()
	<-s.done
}

func shuntConfig(topo *topology, sd *sshd, knownHosts, rules string) string {
	return fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
rules:
%s
tun:
  name: %s
log:
  level: debug
`, gatewayAddr, sd.clientKey, knownHosts, rules, topo.tunName())
}

func (topo *topology) tunName() string { return "sh" + topo.id + "t" }

const internalRules = `  - name: no-telnet
    destinations: [172.31.2.0/24]
    ports: [9099]
    action: block
  - name: internal
    destinations: [172.31.2.0/24, "fd31:2::/64"]
    action: tunnel
    profile: gw`

// services runs on the internal host.
type services struct {
	download     []byte
	downloadSum  [32]byte
	uploads      chan [32]byte
	witnessConns atomic.Int32 // connections to the witness port
}

const (
	portUpload   = 9001
	portDownload = 9002
	portEcho     = 9003
	portWitness  = 9004
	portBlocked  = 9099
	portNothing  = 9998
)

func startServices(t *testing.T, host *ns) *services {
	t.Helper()
	s := &services{uploads: make(chan [32]byte, 4)}
	s.download = make([]byte, 64<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(s.download)
	s.downloadSum = sha256.Sum256(s.download)

	serve := func(port int, h func(net.Conn)) { host.serve(t, fmt.Sprintf("[::]:%d", port), h) }
	serve(portUpload, func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		s.uploads <- sum
	})
	serve(portEcho, func(c net.Conn) { io.Copy(c, c) })
	serve(portWitness, func(c net.Conn) { s.witnessConns.Add(1) })
	ln := host.listen(t, fmt.Sprintf("[::]:%d", portDownload))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(s.download)))
		w.Write(s.download)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

func sha256File(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestEndToEnd(t *testing.T) {
	prerequisites(t, "socat", "curl")
	topo := newTopology(t)
	// The client's ordinary way out is the gateway, which does not forward:
	// the internal network is unreachable without the tunnel.
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	topo.client.exec(t, "ip", "-6", "route", "add", "default", "via", gateway6)
	sd := startSSHD(t, topo.gateway)
	svc := startServices(t, topo.internal)
	internal := func(port int) string { return net.JoinHostPort(internalAddr, fmt.Sprint(port)) }

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if c, err := topo.client.dial(ctx, internal(portEcho)); err == nil {
		c.Close()
		t.Fatal("the client reaches the internal host without shunt: the topology is wrong")
	}
	cancel()

	sh := startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, internalRules))

	t.Run("upload 64 MiB with socat", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "up.bin")
		data := make([]byte, 64<<20)
		rand.NewChaCha8([32]byte{2}).Read(data)
		os.WriteFile(file, data, 0o600)
		want := sha256.Sum256(data)
		topo.client.exec(t, "socat", "-u", "FILE:"+file, "TCP:"+internal(portUpload))
		select {
		case got := <-svc.uploads:
			if got != want {
				t.Fatalf("internal host received sha256 %x, sent %x", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("upload never completed at the internal host")
		}
	})

	t.Run("download 64 MiB with curl", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "down.bin")
		topo.client.exec(t, "curl", "-sS", "--fail", "--max-time", "60", "-o", file, "http://"+internal(portDownload)+"/blob")
		if got := sha256File(t, file); got != svc.downloadSum {
			t.Fatalf("downloaded sha256 %x, served %x", got, svc.downloadSum)
		}
	})

	t.Run("IPv6 through the tunnel", func(t *testing.T) {
		echoCheck(t, topo.client, net.JoinHostPort(internal6, fmt.Sprint(portEcho)), []byte("over IPv6"))
	})

	t.Run("200 concurrent flows", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				payload := bytes.Repeat([]byte(fmt.Sprintf("flow %03d|", i)), 4000)
				if err := echo(topo.client, internal(portEcho), payload); err != nil {
					errs <- fmt.Errorf("flow %d: %w", i, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		n := 0
		for err := range errs {
			if n++; n <= 5 {
				t.Error(err)
			}
		}
		if n > 0 {
			t.Fatalf("%d of 200 flows failed", n)
		}
	})

	t.Run("block rule refuses at once", func(t *testing.T) {
		best := time.Hour
		for range 5 {
			start := time.Now()
			_, err := topo.client.dial(context.Background(), internal(portBlocked))
			took := time.Since(start)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial to a blocked port: %v, want connection refused", err)
			}
			best = min(best, took)
		}
		// A blocked flow is refused before anything is dialled (about a
		// millisecond here); the bound only tells "at once" from "after
		// a dial or its timeout", whatever the machine's load.
		t.Logf("refused in %v (best of 5)", best)
		if best > time.Second {
			t.Fatalf("block took %v: it waited for something", best)
		}
	})

	t.Run("no listener behind the gateway is a refused connection", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := topo.client.dial(ctx, internal(portNothing))
		if err == nil {
			c.Close()
			t.Fatal("connect succeeded: the application sees connect-then-close, want RST")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial: %v, want connection refused", err)
		}
		waitFor(t, "shunt to log the refusal", func() bool {
			return strings.Contains(sh.log.String(), "could not connect to "+internal(portNothing))
		})
	})

	t.Run("only captured destinations are routed to the TUN", func(t *testing.T) {
		if out := topo.client.exec(t, "ip", "route", "get", internalAddr); !strings.Contains(out, "dev "+topo.tunName()) {
			t.Errorf("captured %s is not routed to the TUN: %s", internalAddr, out)
		}
		if out := topo.client.exec(t, "ip", "-6", "route", "get", internal6); !strings.Contains(out, "dev "+topo.tunName()) {
			t.Errorf("captured %s is not routed to the TUN: %s", internal6, out)
		}
		for _, dst := range []string{"172.31.9.9", gatewayAddr, "192.0.2.1"} {
			if out := topo.client.exec(t, "ip", "route", "get", dst); strings.Contains(out, topo.tunName()) {
				t.Errorf("%s matches no rule but is routed to the TUN: %s", dst, out)
			}
		}
	})

	t.Run("SIGTERM removes TUN, routes and rules", func(t *testing.T) {
		sh.stop(t)
		assertClean(t, topo)
	})

	t.Run("unknown host key refuses and sends nothing", func(t *testing.T) {
		empty := filepath.Join(t.TempDir(), "known_hosts")
		os.WriteFile(empty, nil, 0o600)
		loginsBefore := strings.Count(sd.log.String(), "Accepted publickey")
		sh := startShunt(t, topo, shuntConfig(topo, sd, empty, internalRules))
		defer sh.stop(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := topo.client.dial(ctx, internal(portWitness))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial with an unknown host key: %v, want connection refused", err)
		}
		waitFor(t, "the host key error in the log", func() bool {
			l := sh.log.String()
			return strings.Contains(l, "host key of "+gatewayAddr+":22 is unknown") && strings.Contains(l, sd.fingerprint)
		})
		if n := svc.witnessConns.Load(); n != 0 {
			t.Fatalf("the internal host got %d connections", n)
		}
		if strings.Count(sd.log.String(), "Accepted publickey") != loginsBefore {
			t.Fatalf("shunt logged in to a server whose key it does not know:\n%s", sd.log)
		}
	})

	t.Run("capturing 0.0.0.0/0 with the gateway inside it", func(t *testing.T) {
		// A service on the gateway itself, for the direct rule.
		echoOn(t, topo.gateway, net.JoinHostPort(gatewayAddr, "7000"))
		rules := `  - name: gateway-service
    destinations: [172.31.1.1]
    ports: [7000]
    action: direct
  - name: all
    destinations: [0.0.0.0/0]
    action: tunnel
    profile: gw`
		sh := startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, rules))
		if out := topo.client.exec(t, "ip", "route", "get", gatewayAddr); !strings.Contains(out, topo.tunName()) {
			t.Fatalf("the gateway is not captured: %s", out)
		}
		echoCheck(t, topo.client, internal(portEcho), bytes.Repeat([]byte("no loop "), 1<<17))
		// A direct flow inside the captured range leaves by the normal
		// route; if it re-entered the TUN it would loop and never connect.
		echoCheck(t, topo.client, net.JoinHostPort(gatewayAddr, "7000"), []byte("direct inside the capture"))
		waitFor(t, "the direct flow in the log", func() bool {
			return strings.Contains(sh.log.String(), `msg="flow open" action=direct dst="172.31.1.1:7000"`)
		})
		sh.stop(t)
		assertClean(t, topo)
	})

	t.Run("leftovers of a crash are cleared at the next start", func(t *testing.T) {
		sh := startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, internalRules))
		sh.kill()
		if out := topo.client.exec(t, "ip", "rule"); !strings.Contains(out, "lookup 21352") {
			t.Fatalf("expected a leftover policy rule after the crash:\n%s", out)
		}
		sh = startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, internalRules))
		if !strings.Contains(sh.log.String(), "left behind by an earlier run") {
			t.Errorf("shunt did not report the leftovers it removed")
		}
		if n := strings.Count(topo.client.exec(t, "ip", "rule"), "lookup 21352"); n != 1 {
			t.Errorf("%d policy rules for shunt's table, want 1", n)
		}
		echoCheck(t, topo.client, internal(portEcho), []byte("after crash"))
		sh.stop(t)
		assertClean(t, topo)
	})
}

// echo sends payload, half-closes, and checks the echo.
func echo(client *ns, addr string, payload []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(payload), len(got))
	}
	return nil
}

func echoCheck(t *testing.T, client *ns, addr string, payload []byte) {
	t.Helper()
	if err := echo(client, addr, payload); err != nil {
		t.Fatalf("echo via %s: %v", addr, err)
	}
}

// assertClean checks that no trace of shunt is left in the client.
func assertClean(t *testing.T, topo *topology) {
	t.Helper()
	if err := topo.client.command("ip", "link", "show", topo.tunName()).Run(); err == nil {
		t.Errorf("TUN device %s still exists", topo.tunName())
	}
	for _, fam := range []string{"-4", "-6"} {
		if out := topo.client.exec(t, "ip", fam, "rule"); strings.Contains(out, "21352") {
			t.Errorf("policy rule left (%s):\n%s", fam, out)
		}
		out, _ := topo.client.command("ip", fam, "route", "show", "table", "21352").CombinedOutput()
		if strings.TrimSpace(string(out)) != "" && !strings.Contains(string(out), "does not exist") {
			t.Errorf("routes left in table 21352 (%s):\n%s", fam, out)
		}
	}
}
