//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Stock OpenSSH with ClientAliveInterval: when the client has been silent
// for an interval, sshd sends a keepalive@openssh.com request with
// want-reply on an open channel, and closes the connection ("Timeout,
// client not responding") once ClientAliveCountMax of them went
// unanswered. A tunnelled flow that stays idle must survive it, as it
// does with ssh -L, however many probes come (x/crypto queues 16 per
// channel, then stops reading the connection), and the connection must
// keep carrying other flows.
func TestClientAliveProbesKeepIdleFlows(t *testing.T) {
	prerequisites(t)
	topo := newTopology(t)
	const interval = 1 * time.Second
	sd := startSSHDWith(t, topo.gateway, sshdOptions{
		listen: []string{gatewayAddr},
		extra:  []string{fmt.Sprintf("ClientAliveInterval %d", int(interval/time.Second)), "ClientAliveCountMax 2"},
	})
	target := internalAddr + ":9003"
	echoOn(t, topo.internal, target)
	profile := fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s",
		gatewayAddr, sd.clientKey, sd.knownHosts)
	sh := startShunt(t, topo, tunnelConfig(topo, profile, ""))

	c, err := topo.client.dial(context.Background(), target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnConn(t, c, "before the idle time")
	// Idle for more probes than x/crypto's 16 queue slots; shunt's own
	// keepalives (every 15 s) do not answer them.
	time.Sleep(20 * interval)
	echoOnConn(t, c, "after 20 probes")
	echoCheck(t, topo.client, target, []byte("a second flow on the same connection"))

	if n := sd.logins(); n != 1 {
		t.Errorf("%d logins, want the one SSH connection throughout", n)
	}
	if strings.Contains(sd.log.String(), "Timeout, client not responding") {
		t.Errorf("sshd gave up on shunt:\n%s", sd.log)
	}
	// The probes reached shunt and were answered as they came.
	if !strings.Contains(sh.log.String(), "refusing the server's channel requests") {
		t.Errorf("shunt's log does not show sshd's probes:\n%s", sh.log)
	}
	sh.stop(t)
}

// echoOnConn sends msg on an echoed connection and checks what comes back.
func echoOnConn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo of %q came back as %q", msg, got)
	}
}
