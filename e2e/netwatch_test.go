//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// netwatchSetup is a topology with sshd on the gateway, an echo server
// on the internal host, and shunt up, its SSH connection made. profile
// holds more keys of the profile (each line "\n    key: value").
func netwatchSetup(t *testing.T, profile string) (*topology, *sshd, *shunt, string) {
	t.Helper()
	prerequisites(t)
	topo := newTopology(t)
	sd := startSSHD(t, topo.gateway)
	// A session whose client vanished (its address gone) stays at the
	// gateway, holding sshd's output: kill them all, before sshd's own
	// clean-up waits for that output.
	t.Cleanup(sd.killAll)
	echo := net.JoinHostPort(internalAddr, fmt.Sprint(portEcho))
	echoOn(t, topo.internal, echo)
	cfg := shuntConfig(topo, sd, sd.knownHosts, internalRules)
	cfg = strings.Replace(cfg, "known_hosts: "+sd.knownHosts+"\n", "known_hosts: "+sd.knownHosts+profile+"\n", 1)
	sh := startShunt(t, topo, cfg)
	echoCheck(t, topo.client, echo, []byte("before"))
	return topo, sd, sh, echo
}

// `ip link del` of the TUN while shunt runs: shunt says the device was
// removed from outside, removes its routes and rules, and exits with 1.
func TestTUNRemovedFromOutside(t *testing.T) {
	topo, _, sh, _ := netwatchSetup(t, "")
	topo.client.exec(t, "ip", "link", "del", topo.tunName())
	err := sh.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("exit: %v, want status 1", err)
	}
	want := fmt.Sprintf("the TUN device %s was removed from outside shunt (ip link del?): stopping", topo.tunName())
	if log := sh.log.String(); !strings.Contains(log, want) || strings.Contains(log, "file already closed") {
		t.Errorf("log does not say %q (or still says file already closed):\n%s", want, log)
	}
	assertClean(t, topo)
}

// shunt stopped (SIGSTOP) for 60 s, as a machine asleep, then continued:
// it notices the clock jump and checks its connections at once. The
// server lived on, so the connection answers the check and is kept: a
// flow that was open across the stop works on, and a new flow works.
//
// The server answers late, 3 s after shunt continues (its session is
// stopped too, and continued then), within the check's bound (5 s): a
// minute that shunt slept through is not the server's silence, and must
// not end the connection before the check has heard the answer. (Until
// the keepalive counted only the time it watched, it closed the
// connection a tick after shunt continued, 1.5 s here, "silent for 1m".)
func TestClockJumpChecksConnections(t *testing.T) {
	topo, sd, sh, target := netwatchSetup(t, "\n    keepalive_interval: 6s\n    keepalive_count: 3")
	t.Parallel() // a minute of waiting, in namespaces of its own
	open, err := topo.client.dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	echoOnConn(t, open, "before the stop")
	sh.cmd.Process.Signal(syscall.SIGSTOP)
	defer sh.cmd.Process.Signal(syscall.SIGCONT)
	if n := signalTree(sd.cmd.Process.Pid, syscall.SIGSTOP, true); n == 0 {
		t.Fatal("sshd serves the connection from no process of its own")
	}
	defer signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, true)
	time.Sleep(60 * time.Second)
	continued := time.Now()
	sh.cmd.Process.Signal(syscall.SIGCONT)
	time.Sleep(3 * time.Second)
	answering := time.Now()
	signalTree(sd.cmd.Process.Pid, syscall.SIGCONT, true)
	waitFor(t, "shunt to notice the clock jump", func() bool {
		return strings.Contains(sh.log.String(), "the clock jumped") && strings.Contains(sh.log.String(), "checking the SSH connections now")
	})
	echoOnConn(t, open, "after the stop")
	waitFor(t, "a flow after the jump", func() bool { return echo(topo.client, target, []byte("after")) == nil })
	t.Logf("fault shunt-stopped-60s: application saw its open flow survive, no error (the server answering %v after shunt continued); recovered in %v",
		answering.Sub(continued).Round(time.Millisecond), time.Since(answering).Round(time.Millisecond))
	if l := sh.log.String(); strings.Contains(l, "stopped answering keepalives") || strings.Contains(l, "did not answer a keepalive") {
		t.Errorf("shunt closed a connection whose server answered in time:\n%s", l)
	}
	if n := sd.logins(); n != 1 {
		t.Errorf("%d logins, want the one SSH connection throughout", n)
	}
	sh.stop(t)
	assertClean(t, topo)
}

// The client's address changes under the SSH connection: shunt notices
// at once (netlink), replaces the connection, resets its flows, and the
// next flow works through a new one.
func TestAddressChangeReplacesConnection(t *testing.T) {
	topo, _, sh, target := netwatchSetup(t, "")
	open, err := topo.client.dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := open.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	dev := "sh" + topo.id + "c"
	topo.client.exec(t, "ip", "addr", "del", clientAddr+"/24", "dev", dev)
	topo.client.exec(t, "ip", "addr", "add", "172.31.1.3/24", "dev", dev)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	waitFor(t, "shunt to replace the connection", func() bool {
		return strings.Contains(sh.log.String(), "local address is no longer on this machine")
	})
	// The flow on the old connection is reset, not left hanging.
	open.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Errorf("the flow on the old connection: %v, want it reset", err)
	}
	waitFor(t, "a flow after the change", func() bool { return echo(topo.client, target, []byte("after")) == nil })
	sh.stop(t)
	assertClean(t, topo)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
