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
// on the internal host, and shunt up, its SSH connection made.
func netwatchSetup(t *testing.T) (*topology, *shunt, string) {
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
	sh := startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, internalRules))
	echoCheck(t, topo.client, echo, []byte("before"))
	return topo, sh, echo
}

// `ip link del` of the TUN while shunt runs: shunt says the device was
// removed from outside, removes its routes and rules, and exits with 1.
func TestTUNRemovedFromOutside(t *testing.T) {
	topo, sh, _ := netwatchSetup(t)
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

// shunt stopped (SIGSTOP) for 20 s, as a machine asleep, then continued:
// it notices the clock jump and checks its connections at once; a new
// flow works.
func TestClockJumpChecksConnections(t *testing.T) {
	topo, sh, target := netwatchSetup(t)
	sh.cmd.Process.Signal(syscall.SIGSTOP)
	time.Sleep(20 * time.Second)
	sh.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, "shunt to notice the clock jump", func() bool {
		return strings.Contains(sh.log.String(), "the clock jumped") && strings.Contains(sh.log.String(), "checking the SSH connections now")
	})
	waitFor(t, "a flow after the jump", func() bool { return echo(topo.client, target, []byte("after")) == nil })
	sh.stop(t)
	assertClean(t, topo)
}

// The client's address changes under the SSH connection: shunt notices
// at once (netlink), replaces the connection, resets its flows, and the
// next flow works through a new one.
func TestAddressChangeReplacesConnection(t *testing.T) {
	topo, sh, target := netwatchSetup(t)
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
