//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Fault injection against real programs: each test breaks one part of the
// path (sshd, the gateway's link, the proxy, the DNS upstream), says what
// the application saw, how long shunt took to carry new flows again, and
// checks that nothing is left behind once shunt stops. Each logs one line
//
//	fault NAME: application saw WHAT; recovered in DURATION
//
// for the README. Timings are logged, never asserted: the bounds below only
// tell "reset" from "hang" and "recovered" from "never".
//
// The tests run in parallel (each has its own namespaces, TUN, control
// socket and state directory): most of their time is spent waiting.

// faultKeepalive makes a profile declare its server dead after 3 s of
// silence instead of the default 45 s.
const faultKeepalive = "\n    keepalive_interval: 1s\n    keepalive_count: 3"

// faultBound bounds every wait for an outcome: far beyond the 3 s
// keepalive bound and any set-up, so only a hang reaches it.
const faultBound = 30 * time.Second

// logFault is the uniform line the lead collects.
func logFault(t *testing.T, name, saw string, recovered time.Duration) {
	t.Helper()
	t.Logf("fault %s: application saw %s; recovered in %v", name, saw, recovered.Round(time.Millisecond))
}

// liveFlow is a flow in mid-transfer: an echo the test writes to and reads
// from without pause, until the connection fails.
type liveFlow struct {
	c        net.Conn
	readErr  chan error
	writeErr chan error
	received atomic.Int64
}

// startLiveFlow opens a flow to an echo at addr and keeps data moving both
// ways; it returns once 1 MiB came back.
func startLiveFlow(t *testing.T, client *ns, addr string) *liveFlow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultBound)
	defer cancel()
	c, err := client.dial(ctx, addr)
	if err != nil {
		t.Fatalf("live flow to %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	f := &liveFlow{c: c, readErr: make(chan error, 1), writeErr: make(chan error, 1)}
	go func() {
		buf := bytes.Repeat([]byte("live flow "), 3<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				f.writeErr <- err
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			f.received.Add(int64(n))
			if err != nil {
				f.readErr <- err
				return
			}
		}
	}()
	deadline := time.Now().Add(faultBound)
	for f.received.Load() < 1<<20 {
		select {
		case err := <-f.readErr:
			t.Fatalf("live flow to %s ended before 1 MiB: %v", addr, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("live flow to %s: %d bytes in %v", addr, f.received.Load(), faultBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

// end waits, up to faultBound, for the flow to fail, and says how it
// ended: "reset" (ECONNRESET or EPIPE on either side), "eof" (a clean end,
// which would hide the failure from the application), or "hang".
func (f *liveFlow) end() (string, error) {
	f.c.SetReadDeadline(time.Now().Add(faultBound))
	rErr := <-f.readErr
	var wErr error
	select {
	case wErr = <-f.writeErr:
	case <-time.After(5 * time.Second):
		// A writer blocked on a full window: the reset reached the reader.
	}
	switch {
	case errors.Is(rErr, syscall.ECONNRESET) || errors.Is(wErr, syscall.ECONNRESET) || errors.Is(wErr, syscall.EPIPE):
		return "reset", nil
	case errors.Is(rErr, io.EOF):
		return "eof", fmt.Errorf("the flow ended cleanly (EOF): the application cannot tell the failure")
	case isTimeout(rErr):
		return "hang", fmt.Errorf("the flow was neither reset nor ended within %v", faultBound)
	}
	return "error", fmt.Errorf("the flow ended with read %v, write %v", rErr, wErr)
}

// mustReset waits for the flow's reset and returns how long it took from
// since.
func (f *liveFlow) mustReset(t *testing.T, since time.Time) time.Duration {
	t.Helper()
	how, err := f.end()
	took := time.Since(since)
	if err != nil {
		t.Fatalf("running flow after the fault: %s: %v", how, err)
	}
	return took
}

// tryEcho is one application attempt: connect within d, send a line, read
// it back.
func tryEcho(client *ns, addr string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := client.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	msg := []byte("are you there\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo came back as %q", got)
	}
	return nil
}

// recoverSince retries a flow, as an application would, until one works,
// and returns the time since since. Each attempt may take up to 5 s.
func recoverSince(t *testing.T, client *ns, addr string, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(2 * faultBound)
	var err error
	for time.Now().Before(deadline) {
		if err = tryEcho(client, addr, 5*time.Second); err == nil {
			return time.Since(since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no flow to %s worked within %v of the fault's end: %v", addr, 2*faultBound, err)
	return 0
}

// signalTree sends sig to pid's descendants, deepest first, and then to
// pid itself unless onlyBelow.
func signalTree(pid int, sig syscall.Signal, onlyBelow bool) int {
	procs := descendants(pid)
	for _, p := range procs {
		syscall.Kill(p, sig)
	}
	if !onlyBelow {
		syscall.Kill(pid, sig)
	}
	return len(procs)
}

// settleIPv6 waits until the devices' IPv6 link-local addresses have
// passed duplicate address detection. The kernel adds them a second or
// two after a link comes up; shunt sees that as a network change and
// checks its connections, which in the middle of a fault would test
// that check rather than the fault.
func settleIPv6(t *testing.T, n *ns, devs ...string) {
	t.Helper()
	waitFor(t, "IPv6 link-local addresses in "+n.name, func() bool {
		for _, d := range devs {
			out, _ := n.command("ip", "-6", "-o", "addr", "show", "dev", d, "scope", "link", "-tentative").CombinedOutput()
			if !strings.Contains(string(out), "fe80:") {
				return false
			}
		}
		return true
	})
}

// faultSetup is a topology, an sshd on the gateway, echoes on the internal
// host at 9003 and 9005, and shunt tunnelling 9003 through profile gw
// (keepalives as given) and 9005 through profile slow (default
// keepalives).
func faultSetup(t *testing.T, keepalive string) (*topology, *sshd, *shunt) {
	t.Helper()
	prerequisites(t)
	t.Parallel()
	topo := newTopology(t)
	settleIPv6(t, topo.client, "sh"+topo.id+"c")
	sd := startSSHD(t, topo.gateway)
	// Sessions left stopped or orphaned would hold sshd's clean-up.
	t.Cleanup(func() { signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, false); sd.killAll() })
	echoOn(t, topo.internal, internalAddr+":9003")
	echoOn(t, topo.internal, internalAddr+":9005")
	key := fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, sd.clientKey, sd.knownHosts)
	cfg := fmt.Sprintf(`profiles:
  - name: gw
%s%s
  - name: slow
%s
rules:
  - name: fast
    destinations: [172.31.2.0/24]
    ports: [9003]
    action: tunnel
    profile: gw
  - name: slow
    destinations: [172.31.2.0/24]
    ports: [9005]
    action: tunnel
    profile: slow
tun:
  name: %s
log:
  level: debug
`, key, keepalive, key, topo.tunName())
	sh := startShunt(t, topo, cfg)
	return topo, sd, sh
}

// sshd killed (SIGKILL) mid-transfer: first only the processes serving the
// connection (the listener lives on), then the whole server, restarted a
// few seconds later.
func TestFaultSSHDKilled(t *testing.T) {
	topo, sd, sh := faultSetup(t, faultKeepalive)
	target := internalAddr + ":9003"

	t.Run("the session's processes", func(t *testing.T) {
		flow := startLiveFlow(t, topo.client, target)
		killed := time.Now()
		if n := signalTree(sd.cmd.Process.Pid, syscall.SIGKILL, true); n == 0 {
			t.Fatal("sshd serves the connection from no process of its own")
		}
		reset := flow.mustReset(t, killed)
		// The listener lives: the next flow connects anew at once.
		rec := recoverSince(t, topo.client, target, killed)
		logFault(t, "sshd-session-killed", fmt.Sprintf("running flow reset after %v, next flow works at once", reset.Round(time.Millisecond)), rec)
	})

	t.Run("the whole server, restarted", func(t *testing.T) {
		flow := startLiveFlow(t, topo.client, target)
		killed := time.Now()
		sd.killAll()
		reset := flow.mustReset(t, killed)
		// While sshd is down, a new flow is refused at once: nothing
		// listens on port 22, the gateway answers with a RST.
		start := time.Now()
		err := tryEcho(topo.client, target, faultBound)
		refusedIn := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("a new flow while sshd is down: %v, want connection refused", err)
		}
		if l := firstLine(sh.log.String(), "SSH connection failed", "connect to SSH server "+gatewayAddr+":22 direct"); l == "" {
			t.Errorf("the log does not say why the flow was refused:\n%s", sh.log)
		} else {
			t.Logf("shunt: %s", l)
		}
		time.Sleep(2 * time.Second)
		restarted := time.Now()
		sd.start(t)
		rec := recoverSince(t, topo.client, target, restarted)
		logFault(t, "sshd-killed", fmt.Sprintf("running flow reset after %v, new flows refused (ECONNREFUSED) in %v while sshd is down", reset.Round(time.Millisecond), refusedIn.Round(time.Millisecond)), rec)
	})

	if !strings.Contains(sh.log.String(), "SSH connection lost") {
		t.Error("the log does not report the lost connection")
	}
	sh.stop(t)
	assertClean(t, topo)
}

// sshd stopped (SIGSTOP) for longer than the keepalive bound, then
// continued. With only the session's processes stopped, the listener still
// answers: the next flow gets a new connection at once. With the whole
// server stopped, no new connection can be made: the kernel completes the
// TCP handshake on the listening socket, but no SSH banner comes; a flow
// that arrives then is held (the application's connect waits), and goes
// through once sshd continues, within the dial timeout.
func TestFaultSSHDStopped(t *testing.T) {
	topo, sd, sh := faultSetup(t, faultKeepalive)
	target := internalAddr + ":9003"
	const stopped = 8 * time.Second // beyond the 3 s keepalive bound

	t.Run("the session's processes", func(t *testing.T) {
		flow := startLiveFlow(t, topo.client, target)
		at := time.Now()
		if n := signalTree(sd.cmd.Process.Pid, syscall.SIGSTOP, true); n == 0 {
			t.Fatal("sshd serves the connection from no process of its own")
		}
		reset := flow.mustReset(t, at)
		rec := recoverSince(t, topo.client, target, at)
		time.Sleep(time.Until(at.Add(stopped)))
		signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, true)
		logFault(t, "sshd-session-stopped", fmt.Sprintf("running flow reset after %v (keepalives), next flow works while the old session is stopped", reset.Round(time.Millisecond)), rec)
	})

	t.Run("the whole server", func(t *testing.T) {
		flow := startLiveFlow(t, topo.client, target)
		at := time.Now()
		signalTree(sd.cmd.Process.Pid, syscall.SIGSTOP, false)
		defer signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, false)
		reset := flow.mustReset(t, at)
		// A new flow now waits for a connection that cannot be made.
		held := make(chan error, 1)
		var heldDone atomic.Int64
		go func() {
			err := tryEcho(topo.client, target, faultBound)
			heldDone.Store(time.Now().UnixNano())
			held <- err
		}()
		time.Sleep(time.Until(at.Add(stopped)))
		select {
		case err := <-held:
			t.Fatalf("a flow while sshd is stopped ended (%v) before sshd was continued", err)
		default:
		}
		continued := time.Now()
		signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, false)
		select {
		case err := <-held:
			if err != nil {
				t.Fatalf("the flow held while sshd was stopped: %v, want it through once sshd continued", err)
			}
		case <-time.After(faultBound):
			t.Fatalf("the flow held while sshd was stopped is still held %v after SIGCONT", faultBound)
		}
		rec := time.Unix(0, heldDone.Load()).Sub(continued)
		logFault(t, "sshd-stopped", fmt.Sprintf("running flow reset after %v (keepalives), a new flow held until SIGCONT and then through", reset.Round(time.Millisecond)), rec)
	})

	if !strings.Contains(sh.log.String(), "stopped answering keepalives") {
		t.Error("the log does not say the server stopped answering keepalives")
	}
	sh.stop(t)
	assertClean(t, topo)
}

// The gateway's link down for 20 s and up again. A profile with short
// keepalives (3 s) declares its connection dead and resets its flows; one
// with the default keepalives (45 s) rides the outage out: its idle flow
// works again once the link is back. An application retrying through the
// outage is refused: each SSH connection attempt fails with "no route to
// host" once the kernel's neighbour probe gives up (2-3 s here), and the
// flows between attempts are refused at once (back-off). It gets through
// once the link is back and the back-off has run out (at most 16 s after
// 20 s of failures). The attempts' outcomes are logged, not asserted:
// they depend on the kernel's neighbour handling.
func TestFaultGatewayLinkDown(t *testing.T) {
	topo, _, sh := faultSetup(t, faultKeepalive)
	fast, slow := internalAddr+":9003", internalAddr+":9005"
	idle, err := topo.client.dial(context.Background(), slow)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	echoOnConn(t, idle, "before the outage")
	flow := startLiveFlow(t, topo.client, fast)

	link := "sh" + topo.id + "g"
	down := time.Now()
	topo.gateway.exec(t, "ip", "link", "set", link, "down")
	upped := false
	defer func() {
		if !upped {
			topo.gateway.exec(t, "ip", "link", "set", link, "up")
		}
	}()
	reset := flow.mustReset(t, down)
	// An application retries through the outage, as a browser would,
	// each attempt given up after 5 s.
	type attempt struct {
		err  error
		took time.Duration
		at   time.Time
	}
	attempts := make(chan attempt, 64)
	go func() {
		for time.Since(down) < 20*time.Second+2*faultBound {
			start := time.Now()
			err := tryEcho(topo.client, fast, 5*time.Second)
			attempts <- attempt{err, time.Since(start), time.Now()}
			if err == nil {
				close(attempts)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		close(attempts)
	}()
	time.Sleep(time.Until(down.Add(20 * time.Second)))
	topo.gateway.exec(t, "ip", "link", "set", link, "up")
	upped = true
	up := time.Now()
	var saw []outcome
	var rec time.Duration
	for a := range attempts {
		if a.err == nil {
			rec = a.at.Sub(up)
			break
		}
		if !a.at.After(up) {
			saw = append(saw, outcome{errName(a.err), a.took})
		}
	}
	if rec == 0 {
		t.Fatalf("no flow worked within %v of the link's return", 2*faultBound)
	}
	echoOnConn(t, idle, "after the outage")
	t.Logf("shunt during the outage: %s", firstLine(sh.log.String(), "SSH connection failed"))
	logFault(t, "gateway-link-down-20s", fmt.Sprintf("flow with 3 s keepalives reset after %v; idle flow with default keepalives (45 s) survived; new flows during the outage: %s", reset.Round(time.Millisecond), summarize(saw)), rec)
	sh.stop(t)
	assertClean(t, topo)
}

// errName is an application's error in short.
func errName(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "EHOSTUNREACH"
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		return "no answer (timeout)"
	}
	return err.Error()
}

// outcome is one application attempt that failed.
type outcome struct {
	kind string
	took time.Duration
}

// summarize counts the outcomes by kind, with the range of their times:
// "64 x ECONNREFUSED in 1ms-2.9s".
func summarize(outcomes []outcome) string {
	if len(outcomes) == 0 {
		return "none"
	}
	var kinds []string
	lo, hi, n := map[string]time.Duration{}, map[string]time.Duration{}, map[string]int{}
	for _, o := range outcomes {
		if n[o.kind] == 0 {
			kinds = append(kinds, o.kind)
			lo[o.kind] = o.took
		}
		n[o.kind]++
		lo[o.kind], hi[o.kind] = min(lo[o.kind], o.took), max(hi[o.kind], o.took)
	}
	var out []string
	for _, k := range kinds {
		out = append(out, fmt.Sprintf("%d x %s in %v-%v", n[k], k, lo[k].Round(time.Millisecond), hi[k].Round(time.Millisecond)))
	}
	return strings.Join(out, ", ")
}

// firstLine returns the first line of log that holds all of words.
func firstLine(log string, words ...string) string {
	for _, l := range strings.Split(log, "\n") {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// proxyProc is a proxy daemon the test kills and restarts.
type proxyProc struct {
	host *ns
	args []string
	cmd  *exec.Cmd
	log  *syncBuffer
}

func startProxy(t *testing.T, host *ns, listen string, args ...string) *proxyProc {
	t.Helper()
	p := &proxyProc{host: host, args: args}
	p.start(t, listen)
	t.Cleanup(p.kill)
	return p
}

func (p *proxyProc) start(t *testing.T, listen string) {
	t.Helper()
	p.log = &syncBuffer{}
	p.cmd = p.host.command(p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitListening(t, p.host, listen)
}

// kill ends the proxy and every process it forked, as a crash would.
func (p *proxyProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	signalTree(p.cmd.Process.Pid, syscall.SIGKILL, false)
	p.cmd.Wait()
}

// The proxy down: dante (SOCKS5) for one profile, tinyproxy (HTTP
// CONNECT) for another, both reaching the gateway's address that only
// the proxy host can reach. A proxy relays the SSH connection's bytes
// itself, so its death ends the connection: the running flows are reset
// at once. New flows are refused at once (the proxy's port answers with a
// RST) with a log line naming the proxy, and work again once it is back.
func TestFaultProxyDown(t *testing.T) {
	prerequisites(t, "danted", "tinyproxy")
	t.Parallel()
	topo := newBrokerTopology(t)
	settleIPv6(t, topo.client, "sh"+topo.id+"c", "sh"+topo.id+"x")
	sd := startSSHDWith(t, topo.gateway, sshdOptions{listen: []string{gatewayBehind}})
	t.Cleanup(sd.killAll)
	echoOn(t, topo.internal, internalAddr+":9003")
	echoOn(t, topo.internal, internalAddr+":9005")
	dir := t.TempDir()
	danteConf := filepath.Join(dir, "danted.conf")
	os.WriteFile(danteConf, []byte(fmt.Sprintf(`logoutput: stderr
internal: %s port = 1080
external: %s
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
}
socks pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: connect
}
`, proxyClientSide, proxyGwSide)), 0o600)
	tpConf := filepath.Join(dir, "tinyproxy.conf")
	os.WriteFile(tpConf, []byte(fmt.Sprintf("Port 8888\nListen %s\nTimeout 600\nAllow %s\nConnectPort 22\nPidFile \"%s\"\n",
		proxyClientSide, clientProxySide, filepath.Join(dir, "tp.pid"))), 0o600)
	proxies := map[string]*proxyProc{
		"socks": startProxy(t, topo.proxy, proxyClientSide+":1080", "danted", "-f", danteConf, "-p", filepath.Join(dir, "danted.pid")),
		"http":  startProxy(t, topo.proxy, proxyClientSide+":8888", "tinyproxy", "-d", "-c", tpConf),
	}
	key := fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s%s", gatewayBehind, sd.clientKey, sd.knownHosts, faultKeepalive)
	cfg := fmt.Sprintf(`profiles:
  - name: socks
%s
    proxy: socks5://%s:1080
  - name: http
%s
    proxy: http://%s:8888
rules:
  - destinations: [172.31.2.0/24]
    ports: [9003]
    action: tunnel
    profile: socks
  - destinations: [172.31.2.0/24]
    ports: [9005]
    action: tunnel
    profile: http
tun:
  name: %s
log:
  level: debug
`, key, proxyClientSide, key, proxyClientSide, topo.tunName())
	sh := startShunt(t, topo.topology, cfg)

	for _, c := range []struct{ profile, target, listen, say string }{
		{"socks", internalAddr + ":9003", proxyClientSide + ":1080", "SOCKS5 proxy " + proxyClientSide + ":1080"},
		{"http", internalAddr + ":9005", proxyClientSide + ":8888", "HTTP proxy " + proxyClientSide + ":8888"},
	} {
		t.Run(c.profile, func(t *testing.T) {
			flow := startLiveFlow(t, topo.client, c.target)
			killed := time.Now()
			proxies[c.profile].kill()
			reset := flow.mustReset(t, killed)
			start := time.Now()
			err := tryEcho(topo.client, c.target, faultBound)
			refusedIn := time.Since(start)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("a new flow while the proxy is down: %v, want connection refused", err)
			}
			waitFor(t, "the log to name the proxy", func() bool {
				return strings.Contains(sh.log.String(), c.say) && strings.Contains(sh.log.String(), "connection refused")
			})
			t.Logf("shunt: %s", firstLine(sh.log.String(), c.say, "connection refused"))
			time.Sleep(2 * time.Second)
			restarted := time.Now()
			proxies[c.profile].start(t, c.listen)
			rec := recoverSince(t, topo.client, c.target, restarted)
			logFault(t, "proxy-down-"+c.profile, fmt.Sprintf("running flow reset after %v, new flows refused (ECONNREFUSED) in %v while the proxy is down", reset.Round(time.Millisecond), refusedIn.Round(time.Millisecond)), rec)
		})
	}
	sh.stop(t)
	assertClean(t, topo.topology)
}

// The DNS upstreams down, with split DNS: the client's own resolver (for
// every other name) and the far-side resolver (resolve_through). Each
// failure is a SERVFAIL within the 5 s bound, never a hang; names under
// the fake policy (a rule by name) still resolve; a restarted resolver
// answers again. resolv.conf is back as it was after shunt stops.
func TestFaultDNSUpstreamDown(t *testing.T) {
	prerequisites(t, "dnsmasq")
	t.Parallel()
	topo := newTopology(t)
	wikiAddr := "172.31.2.3"
	topo.internal.exec(t, "ip", "addr", "add", wikiAddr+"/24", "dev", "sh"+topo.id+"i")
	// Names the resolvers know, a fresh one for each question, so that
	// no answer can come from a cache.
	records := func(domain, addr string) []string {
		var out []string
		for i := range 6 {
			out = append(out, fmt.Sprintf("--host-record=n%d.%s,%s", i, domain, addr))
		}
		return out
	}
	far := startDNSMasq(t, topo.internal, internalAddr, append(records("corp.example", wikiAddr), "--local=/corp.example/")...)
	setResolvConf(t, topo.gateway, "nameserver "+internalAddr+"\n")
	local := startDNSMasq(t, topo.gateway, gatewayAddr, records("shunt.test", gatewayAddr)...)
	original := "# the client's own resolver\nnameserver " + gatewayAddr + "\noptions timeout:2 attempts:2\n"
	resolvConf := setResolvConf(t, topo.client, original)
	sd := startSSHD(t, topo.gateway)
	t.Cleanup(sd.killAll)
	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, `  - name: mail
    destinations: [mail.corp.example]
    action: tunnel
    profile: gw`), "rules:\n", fmt.Sprintf(`dns:
  mode: resolv.conf
  resolve_through:
    - domains: [corp.example]
      profile: gw
      server: %s:53
rules:
`, internalAddr), 1)
	sh := startShunt(t, topo, cfg)

	// ask queries shunt's DNS server, as a stub resolver would (giving
	// up after 10 s), and returns the rcode, the addresses and how long
	// the answer took.
	ask := func(name string) (int, []string, time.Duration) {
		start := time.Now()
		r := query(t, topo.client, "udp", name, dns.TypeA)
		return r.Rcode, answerAddrs(r), time.Since(start)
	}
	mustAnswer := func(name, want string) {
		t.Helper()
		if rc, a, _ := ask(name); rc != dns.RcodeSuccess || len(a) != 1 || want != "" && a[0] != want {
			t.Fatalf("A %s: %s %v, want %s", name, dns.RcodeToString[rc], a, want)
		}
	}
	mustAnswer("n0.corp.example", wikiAddr)
	mustAnswer("n0.shunt.test", gatewayAddr)

	// Killed, the resolver's port refuses at once; stopped (SIGSTOP),
	// it says nothing, as a resolver on a host that went away.
	n := 0
	for _, c := range []struct {
		name, domain, addr string
		r                  *dnsmasqProc
		stop               bool
	}{
		{"dns-upstream-killed", "shunt.test", gatewayAddr, local, false},
		{"dns-upstream-silent", "shunt.test", gatewayAddr, local, true},
		{"dns-far-resolver-killed", "corp.example", wikiAddr, far, false},
		{"dns-far-resolver-silent", "corp.example", wikiAddr, far, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := func() string { n++; return fmt.Sprintf("n%d.%s", n%5+1, c.domain) }
			if c.stop {
				c.r.cmd.Process.Signal(syscall.SIGSTOP)
				defer c.r.cmd.Process.Signal(syscall.SIGCONT)
			} else {
				c.r.kill()
			}
			rc, _, took := ask(name())
			if rc != dns.RcodeServerFailure {
				t.Fatalf("A with the resolver down: %s, want SERVFAIL", dns.RcodeToString[rc])
			}
			// The tunnelled name of a rule needs no resolver.
			mustAnswer("mail.corp.example", "")
			time.Sleep(2 * time.Second)
			restarted := time.Now()
			if c.stop {
				c.r.cmd.Process.Signal(syscall.SIGCONT)
			} else {
				c.r.start(t)
			}
			deadline := time.Now().Add(faultBound)
			for {
				if rc, a, _ := ask(name()); rc == dns.RcodeSuccess && len(a) == 1 && a[0] == c.addr {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no answer within %v of the resolver's return", faultBound)
				}
				time.Sleep(50 * time.Millisecond)
			}
			logFault(t, c.name, fmt.Sprintf("SERVFAIL in %v, names of tunnel rules still resolve", took.Round(time.Millisecond)), time.Since(restarted))
		})
	}
	sh.stop(t)
	if b, _ := os.ReadFile(resolvConf); string(b) != original {
		t.Errorf("resolv.conf after shunt stopped:\n%q\nwant\n%q", b, original)
	}
	assertClean(t, topo)
}

// dnsmasqProc is a dnsmasq the test kills and restarts.
type dnsmasqProc struct {
	host   *ns
	listen string
	args   []string
	cmd    *exec.Cmd
}

func startDNSMasq(t *testing.T, host *ns, listen string, args ...string) *dnsmasqProc {
	t.Helper()
	d := &dnsmasqProc{host: host, listen: listen, args: args}
	d.start(t)
	t.Cleanup(d.kill)
	return d
}

func (d *dnsmasqProc) start(t *testing.T) {
	t.Helper()
	d.cmd = d.host.command(append([]string{"dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
		"--listen-address=" + d.listen, "--bind-interfaces", "--log-facility=-",
		"--pid-file=" + filepath.Join(t.TempDir(), "pid"), "--user=root"}, d.args...)...)
	log := &syncBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dnsmasq on "+d.listen, func() bool { return strings.Contains(log.String(), "started") })
}

func (d *dnsmasqProc) kill() {
	if d.cmd.ProcessState == nil {
		d.cmd.Process.Kill()
		d.cmd.Wait()
	}
}
