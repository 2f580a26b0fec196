//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonConfig is the configuration of TestDaemon's shunt: profile gw
// logs in with the key, profile pw with a password only (its sshd user
// has no key); rules is inserted before the internal network's tunnel.
func daemonConfig(topo *topology, sd *sshd, user, socket, rules string) string {
	return fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
  - name: pw
    host: %s
    user: %s
    auth_methods: [password]
    known_hosts: %s
rules:
  - name: by-password
    destinations: [172.31.2.0/24]
    ports: [%d]
    action: tunnel
    profile: pw
%s  - name: internal
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw
tun:
  name: %s
log:
  level: debug
  format: json
control:
  socket: %s
metrics:
  listen: 127.0.0.1:9559   # the client namespace's own loopback
shutdown_grace: 60s
`, gatewayAddr, sd.clientKey, sd.knownHosts, gatewayAddr, user, sd.knownHosts, portPassword, rules, topo.tunName(), socket)
}

const portPassword = 9010

// startDaemon starts `shunt daemon` on config file path in the client
// namespace, without a terminal (stdin /dev/null, no askpass, no agent),
// with more environment variables.
func startDaemon(t *testing.T, topo *topology, path, socket string, env ...string) *shunt {
	t.Helper()
	s := &shunt{log: &syncBuffer{}, done: make(chan error, 1), socket: socket}
	s.cmd = topo.client.command(shuntBin, "daemon", "--global", "", "--user-config", "", "--config", path)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY", "WAYLAND_DISPLAY", "SSH_AUTH_SOCK", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "SUDO_USER":
		default:
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	// Its own session: no controlling terminal to open either.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
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
			t.Logf("shunt daemon log:\n%s", s.log)
		}
	})
	return s
}

// ctl runs a client command in the client namespace, on the daemon's
// socket, with stdin; it returns stdout, stderr and the error.
func (s *shunt) ctl(topo *topology, stdin string, args ...string) (string, string, error) {
	cmd := topo.client.command(append([]string{shuntBin}, append(args, "--socket", s.socket)...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

type daemonStatus struct {
	Capture  bool `json:"capture"`
	Profiles []struct {
		Name, State string
		Sent        int64 `json:"sent"`
		Received    int64 `json:"received"`
	} `json:"profiles"`
	Flows []struct {
		ID       uint64 `json:"id"`
		Src, Dst string
		Profile  string `json:"profile"`
		Sent     int64  `json:"sent"`
		Received int64  `json:"received"`
	} `json:"flows"`
	Prompts []struct {
		ID, Profile, Kind, Message string
	} `json:"prompts"`
}

func (s *shunt) status(t *testing.T, topo *topology) daemonStatus {
	t.Helper()
	out, errOut, err := s.ctl(topo, "", "status", "--json")
	if err != nil {
		t.Fatalf("shunt status --json: %v\n%s", err, errOut)
	}
	var st daemonStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("shunt status --json printed %q: %v", out, err)
	}
	return st
}

// notifySocket listens as systemd does for a service's notifications.
// Before it reads any, it fills the socket's queue, so that the service's
// first notification (READY=1) blocks its sender until read starts
// reading: whatever the service does before it then happens before it
// could have said it.
func notifySocket(t *testing.T) (path string, read func() <-chan string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	filler, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	filled := 0
	for ; filled < 10000; filled++ {
		filler.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := filler.Write([]byte("FILLER")); err != nil {
			break
		}
	}
	if filled == 0 || filled == 10000 {
		t.Fatalf("the notify socket's queue took %d datagrams: it cannot be filled", filled)
	}
	return path, func() <-chan string {
		ch := make(chan string, 64)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if err != nil {
					close(ch)
					return
				}
				if s := string(buf[:n]); s != "FILLER" {
					ch <- s
				}
			}
		}()
		return ch
	}
}

// waitState waits for a notification that starts with prefix.
func waitState(t *testing.T, states <-chan string, prefix string, sh *shunt) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s, ok := <-states:
			if !ok {
				t.Fatalf("the notify socket closed before %s", prefix)
			}
			if strings.HasPrefix(s, prefix) {
				return s
			}
		case err := <-sh.done:
			t.Fatalf("shunt exited (%v) before it sent %s:\n%s", err, prefix, sh.log)
		case <-timeout:
			t.Fatalf("no %s from shunt within 30 s:\n%s", prefix, sh.log)
		}
	}
}

// download reads the internal host's 64 MiB over HTTP: it returns the
// connection, once the first MiB has arrived, and reads the rest when
// asked. It counts every byte read.
type download struct {
	c     net.Conn
	r     *bufio.Reader
	total int64
	body  []byte
}

func startDownload(t *testing.T, topo *topology) *download {
	t.Helper()
	c, err := topo.client.dial(context.Background(), net.JoinHostPort(internalAddr, fmt.Sprint(portDownload)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	d := &download{c: c, r: bufio.NewReader(c)}
	// Headers up to the blank line.
	for {
		line, err := d.r.ReadString('\n')
		d.total += int64(len(line))
		if err != nil {
			t.Fatalf("reading the download's headers: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	d.read(t, 1<<20)
	return d
}

// read reads n more bytes of the body.
func (d *download) read(t *testing.T, n int) {
	t.Helper()
	buf := make([]byte, n)
	if _, err := io.ReadFull(d.r, buf); err != nil {
		t.Fatalf("the download, after %d bytes: %v", d.total, err)
	}
	d.total += int64(n)
	d.body = append(d.body, buf...)
}

// finish reads the rest and checks it against the services' sum.
func (d *download) finish(t *testing.T, svc *services) {
	t.Helper()
	rest, err := io.ReadAll(d.r)
	if err != nil {
		t.Fatalf("the download, after %d bytes: %v", d.total+int64(len(rest)), err)
	}
	d.total += int64(len(rest))
	d.body = append(d.body, rest...)
	d.c.Close()
	if sha256.Sum256(d.body) != svc.downloadSum {
		t.Fatalf("the download's sha256 differs (%d bytes of %d)", len(d.body), len(svc.download))
	}
}

// TestDaemon runs `shunt daemon` as systemd would, and drives it with
// the client commands: readiness, status and events during a transfer,
// closing one flow, reloads good and bad, a password prompt answered by
// shunt auth, and shunt down with a transfer running.
func TestDaemon(t *testing.T) {
	prerequisites(t, "useradd", "chpasswd")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	user, password := testUser(t)
	sd := startSSHDWith(t, topo.gateway, sshdOptions{
		listen: []string{gatewayAddr},
		extra:  []string{"Match User " + user, "  PasswordAuthentication yes", "Match all"},
	})
	svc := startServices(t, topo.internal)
	echoOn(t, topo.internal, net.JoinHostPort(internalAddr, fmt.Sprint(portPassword)))
	echoAddr := net.JoinHostPort(internalAddr, fmt.Sprint(portEcho))

	dir := t.TempDir()
	socket := filepath.Join(dir, "shunt.sock")
	path := filepath.Join(dir, "shunt.yaml")
	writeConfig := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(daemonConfig(topo, sd, user, socket, ""))
	notify, readStates := notifySocket(t)
	sh := startDaemon(t, topo, path, socket, "NOTIFY_SOCKET="+notify)
	var states <-chan string

	t.Run("READY once the routes are in place", func(t *testing.T) {
		// The queue is full: a READY=1 sent before the routes would
		// hold shunt there, and they would never come.
		waitFor(t, "the routes, while READY=1 cannot be sent", func() bool {
			out, _ := topo.client.command("ip", "route", "show", "table", "21352").CombinedOutput()
			return strings.Contains(string(out), "172.31.2.0/24")
		})
		states = readStates()
		waitState(t, states, "READY=1", sh)
		if st := sh.status(t, topo); !st.Capture {
			t.Error("status says the capture is off after READY")
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("a second shunt on the socket refuses to start", func(t *testing.T) {
		cmd := topo.client.command(shuntBin, "daemon", "--global", "", "--user-config", "", "--config", path)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "another shunt is running") {
			t.Errorf("a second daemon: %v\n%s", err, out)
		}
		echoCheck(t, topo.client, echoAddr, []byte("the first still works"))
	})

	t.Run("status and events during a 64 MiB transfer", func(t *testing.T) {
		follow := topo.client.command(shuntBin, "flows", "--follow", "--json", "--socket", socket)
		events := &syncBuffer{}
		follow.Stdout, follow.Stderr = events, events
		if err := follow.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { follow.Process.Kill(); follow.Wait() }()
		// Once a flow's open shows, the stream is subscribed.
		waitFor(t, "flows --follow to show a flow", func() bool {
			echoCheck(t, topo.client, echoAddr, []byte("hello"))
			return strings.Contains(events.String(), `"event":"open"`)
		})

		d := startDownload(t, topo)
		local := d.c.LocalAddr().String()
		var last int64
		for i := range 4 {
			st := sh.status(t, topo)
			var got int64 = -1
			for _, f := range st.Flows {
				if f.Src == local {
					got = f.Received
					if f.Profile != "gw" {
						t.Errorf("the download's profile %q", f.Profile)
					}
				}
			}
			if got < 0 {
				t.Fatalf("status lists no flow from %s: %+v", local, st.Flows)
			}
			if i > 0 && got <= last {
				t.Errorf("received %d after %d: not growing", got, last)
			}
			last = got
			d.read(t, 8<<20)
		}
		d.finish(t, svc)
		var closed map[string]any
		waitFor(t, "the download's close event", func() bool {
			for line := range strings.Lines(events.String()) {
				var ev map[string]any
				if json.Unmarshal([]byte(line), &ev) == nil && ev["event"] == "close" && ev["src"] == local {
					closed = ev
					return true
				}
			}
			return false
		})
		if got := int64(closed["received"].(float64)); got != d.total {
			t.Errorf("the close event says %v bytes received, the application read %d", closed["received"], d.total)
		}
		if got := int64(closed["sent"].(float64)); got != int64(len("GET / HTTP/1.0\r\n\r\n")) {
			t.Errorf("the close event says %v bytes sent", closed["sent"])
		}
	})

	t.Run("close one flow", func(t *testing.T) {
		a, err := topo.client.dial(context.Background(), echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b, err := topo.client.dial(context.Background(), echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTripConn(t, a, "a")
		roundTripConn(t, b, "b")
		var id uint64
		for _, f := range sh.status(t, topo).Flows {
			if f.Src == a.LocalAddr().String() {
				id = f.ID
			}
		}
		if id == 0 {
			t.Fatal("flow a is not in the status")
		}
		if out, errOut, err := sh.ctl(topo, "", "close", fmt.Sprint(id)); err != nil {
			t.Fatalf("shunt close %d: %v\n%s%s", id, err, out, errOut)
		}
		a.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadAll(a); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("flow a after shunt close: %v, want ECONNRESET", err)
		}
		roundTripConn(t, b, "b still")
	})

	t.Run("the metrics endpoint counts the test's flows", func(t *testing.T) {
		out, err := fetchMetrics(topo)
		if err != nil {
			t.Fatal(err)
		}
		sample := func(name string, labels ...string) float64 {
			for _, line := range strings.Split(string(out), "\n") {
				if !strings.HasPrefix(line, name+"{") {
					continue
				}
				all := true
				for _, l := range labels {
					all = all && strings.Contains(line, l)
				}
				if all {
					v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
					return v
				}
			}
			return -1
		}
		// The transfer, the two flows of "close one flow" and the echo
		// checks went through rule "internal" on profile gw; one was
		// reset, all have ended.
		gw := []string{`profile="gw"`, `action="tunnel"`, `rule="#`, `internal\"`}
		if n := sample("shunt_flows_opened_total", gw...); n < 3 {
			t.Errorf("shunt_flows_opened_total for gw = %v, want at least 3\n%s", n, out)
		}
		if n := sample("shunt_flow_bytes_total", append(gw, `direction="received"`)...); n < 64<<20 {
			t.Errorf("shunt_flow_bytes_total received for gw = %v, want the 64 MiB transfer at least", n)
		}
		if n := sample("shunt_ssh_connections", `profile="gw"`, `state="connected"`); n != 1 {
			t.Errorf("shunt_ssh_connections connected for gw = %v, want 1", n)
		}
		if strings.Contains(string(out), internalAddr) || strings.Contains(string(out), gatewayAddr) {
			t.Error("an address appears in the metrics")
		}
	})

	t.Run("shunt auth answers a password prompt", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			done <- echo(topo.client, net.JoinHostPort(internalAddr, fmt.Sprint(portPassword)), []byte("after the password"))
		}()
		waitFor(t, "the password prompt in status", func() bool { return len(sh.status(t, topo).Prompts) > 0 })
		p := sh.status(t, topo).Prompts[0]
		if p.Profile != "pw" || p.Kind != "password" {
			t.Errorf("prompt %+v", p)
		}
		if out, errOut, err := sh.ctl(topo, password+"\n", "auth", "pw"); err != nil {
			t.Fatalf("shunt auth pw: %v\n%s%s", err, out, errOut)
		}
		if err := <-done; err != nil {
			t.Fatalf("the flow waiting for the password: %v", err)
		}
		if !strings.Contains(sd.log.String(), "Accepted password for "+user) {
			t.Error("sshd did not log the password login")
		}
		if strings.Contains(sh.log.String(), password) {
			t.Error("the password is in the daemon's log")
		}
	})

	t.Run("reload", func(t *testing.T) {
		good := daemonConfig(topo, sd, user, socket, "")
		// Broken: refused by SIGHUP and by shunt reload, with file:line;
		// the old rules keep working.
		writeConfig(strings.Replace(good, "action: tunnel\n    profile: gw", "action: drop", 1))
		line := 0
		for i, l := range strings.Split(strings.Replace(good, "action: tunnel\n    profile: gw", "action: drop", 1), "\n") {
			if strings.Contains(l, "name: internal") {
				line = i + 1
			}
		}
		want := fmt.Sprintf("%s:%d: rule #2 \"internal\": unknown action \"drop\"", path, line)
		sh.cmd.Process.Signal(syscall.SIGHUP)
		waitState(t, states, "RELOADING=1", sh)
		waitState(t, states, "READY=1", sh)
		waitFor(t, "the refused reload in the log", func() bool { return strings.Contains(sh.log.String(), strings.ReplaceAll(want, `"`, `\"`)) })
		out, errOut, err := sh.ctl(topo, "", "reload")
		if err == nil || !strings.Contains(out+errOut, want) {
			t.Errorf("shunt reload of a broken configuration: %v\n%s%s\nwant %s", err, out, errOut, want)
		}
		echoCheck(t, topo.client, echoAddr, []byte("old rules"))

		// Good: the echo port is blocked from now on, a running
		// download completes.
		d := startDownload(t, topo)
		writeConfig(daemonConfig(topo, sd, user, socket, fmt.Sprintf("  - name: no-echo\n    destinations: [172.31.2.0/24]\n    ports: [%d]\n    action: block\n", portEcho)))
		if out, errOut, err := sh.ctl(topo, "", "reload"); err != nil {
			t.Fatalf("shunt reload: %v\n%s%s", err, out, errOut)
		}
		if err := echo(topo.client, echoAddr, []byte("new rules")); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("echo after the reload blocked it: %v, want refused", err)
		}
		d.finish(t, svc)
		d2 := startDownload(t, topo)
		d2.finish(t, svc)
	})

	t.Run("shunt down lets a transfer finish, then cleans up", func(t *testing.T) {
		d := startDownload(t, topo)
		down := topo.client.command(shuntBin, "down", "--socket", socket)
		var downOut bytes.Buffer
		down.Stdout, down.Stderr = &downOut, &downOut
		if err := down.Start(); err != nil {
			t.Fatal(err)
		}
		downDone := make(chan error, 1)
		go func() { downDone <- down.Wait() }()
		waitState(t, states, "STOPPING=1", sh)
		// New flows are refused, not sent direct.
		if err := echo(topo.client, net.JoinHostPort(internalAddr, fmt.Sprint(portWitness)), []byte("x")); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a new flow while stopping: %v, want refused", err)
		}
		d.finish(t, svc)
		select {
		case err := <-downDone:
			if err != nil {
				t.Errorf("shunt down: %v\n%s", err, downOut.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("shunt down did not return within 60 s of the transfer's end")
		}
		if err := sh.wait(t); err != nil {
			t.Errorf("the daemon exited with %v", err)
		}
		assertClean(t, topo)
		if _, err := os.Stat(socket); err == nil {
			t.Error("the control socket is left")
		}
	})
}
