package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gatewayProc is a running `shunt gateway` in a namespace.
type gatewayProc struct {
	log        *syncBuffer
	done       chan error
	clientKey  string // private key file authorized on the gateway
	knownHosts string // known_hosts with the gateway's key at its address
	addr       string
	stopFn     func() error
}

const gatewayPort = "2222"

// gatewayStart runs shunt gateway on the topology's gateway host, with
// one client key authorized (with authOptions in front of it) and the
// given --permit entries, and waits for "gateway listening".
func gatewayStart(t *testing.T, topo *topology, authOptions string, permit ...string) *gatewayProc {
	t.Helper()
	dir := t.TempDir()
	g := &gatewayProc{log: &syncBuffer{}, done: make(chan error, 1), addr: net.JoinHostPort(gatewayAddr, gatewayPort)}
	g.clientKey = filepath.Join(dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", g.clientKey)
	pub, err := os.ReadFile(g.clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, []byte(strings.TrimSpace(authOptions+" "+string(pub))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	args := []string{shuntBin, "gateway", "--config", filepath.Join(dir, "none.yaml"),
		"--listen", g.addr, "--host-key", hostKey, "--authorized-keys", keys, "--log-level", "debug"}
	if err := os.WriteFile(filepath.Join(dir, "none.yaml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range permit {
		args = append(args, "--permit", p)
	}
	cmd := topo.gateway.command(args...)
	cmd.Stdout, cmd.Stderr = g.log, g.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.log)
		}
	})
	deadline := time.After(20 * time.Second)
	for !strings.Contains(g.log.String(), "gateway listening") {
		select {
		case err := <-g.done:
			t.Fatalf("gateway exited before listening: %v\n%s", err, g.log)
		case <-deadline:
			t.Fatalf("gateway not listening after 20 s:\n%s", g.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fp := strings.Fields(run(t, "ssh-keygen", "-l", "-f", hostKey+".pub"))[1]
	if !strings.Contains(g.log.String(), fp) {
		t.Errorf("the listening line does not name the host key's fingerprint %s:\n%s", fp, g.log)
	}
	g.knownHosts = filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(g.knownHosts, []byte(fmt.Sprintf("[%s]:%s %s", gatewayAddr, gatewayPort, hostPub)), 0o600); err != nil {
		t.Fatal(err)
	}
	// cmd is stopped by stop or the cleanup.
	g.stopFn = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	return g
}

// stop sends SIGTERM and waits for a clean exit.
func (g *gatewayProc) stop(t *testing.T) {
	t.Helper()
	g.stopFn()
	select {
	case err := <-g.done:
		if err != nil {
			t.Fatalf("gateway exited with %v after SIGTERM:\n%s", err, g.log)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway did not stop within 20 s of SIGTERM:\n%s", g.log)
	}
}

// TestGatewayWithShunt: shunt up on the client tunnels through shunt
// gateway (instead of sshd) to the internal host, only where the permit
// list allows; OpenSSH's ssh -W goes through it too; SIGTERM stops it.
func TestGatewayWithShunt(t *testing.T) {
	prerequisites(t, "ssh")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	startServices(t, topo.internal)
	g := gatewayStart(t, topo, "", fmt.Sprintf("%s/32:%d", internalAddr, portEcho))
	config := fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    port: %s
    user: anyone
    identity_files: [%s]
    known_hosts: %s
rules:
  - name: internal
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw
tun:
  name: %s
log:
  level: debug
`, gatewayAddr, gatewayPort, g.clientKey, g.knownHosts, topo.tunName())
	sh := startShunt(t, topo, config)

	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, fmt.Sprint(portEcho)), []byte("through shunt gateway"))
	// Not in the permit list: the gateway refuses the channel, and the
	// application sees its connection fail.
	if err := echo(topo.client, net.JoinHostPort(internalAddr, fmt.Sprint(portUpload)), []byte("x")); err == nil {
		t.Error("a port outside the permit list was reached")
	}
	waitFor(t, "the gateway's refusal in its log", func() bool {
		return strings.Contains(g.log.String(), "port 9001 is not permitted")
	})

	ssh := topo.client.command("ssh", "-F", "/dev/null", "-p", gatewayPort, "-i", g.clientKey,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile="+g.knownHosts,
		"-W", net.JoinHostPort(internalAddr, fmt.Sprint(portEcho)), "anyone@"+gatewayAddr)
	ssh.Stdin = strings.NewReader("through OpenSSH ssh -W\n")
	if out, err := ssh.Output(); err != nil || string(out) != "through OpenSSH ssh -W\n" {
		t.Errorf("ssh -W through the gateway: %q, %v", out, err)
	}

	sh.stop(t)
	g.stop(t)
}
