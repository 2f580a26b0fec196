//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
// gateway (instead of sshd) to the internal host, the checks it passes
// against sshd: 64 MiB each way with sha256, 200 concurrent flows, a
// destination with no listener and one outside the permit list refused
// (RST); OpenSSH's ssh -W goes through it too; SIGTERM stops it.
func TestGatewayWithShunt(t *testing.T) {
	prerequisites(t, "ssh", "socat", "curl")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	svc := startServices(t, topo.internal)
	internal := func(port int) string { return net.JoinHostPort(internalAddr, fmt.Sprint(port)) }
	g := gatewayStart(t, topo, "", fmt.Sprintf("%s/32:%d,%d,%d,%d", internalAddr, portUpload, portDownload, portEcho, portNothing))
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

	echoCheck(t, topo.client, internal(portEcho), []byte("through shunt gateway"))

	// Both ways, 64 MiB each, checked at the far end.
	upload := filepath.Join(t.TempDir(), "up.bin")
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(upload, data, 0o600); err != nil {
		t.Fatal(err)
	}
	topo.client.exec(t, "socat", "-u", "FILE:"+upload, "TCP:"+internal(portUpload))
	select {
	case got := <-svc.uploads:
		if got != sha256.Sum256(data) {
			t.Errorf("the internal host received sha256 %x through the gateway, sent %x", got, sha256.Sum256(data))
		}
	case <-time.After(60 * time.Second):
		t.Error("the upload through the gateway never completed at the internal host")
	}
	download := filepath.Join(t.TempDir(), "down.bin")
	topo.client.exec(t, "curl", "-sS", "--fail", "--max-time", "60", "-o", download, "http://"+internal(portDownload)+"/blob")
	if sha256File(t, download) != svc.downloadSum {
		t.Error("the download through the gateway does not match its sha256")
	}

	// 200 flows at once.
	var wg sync.WaitGroup
	failed := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := echo(topo.client, internal(portEcho), bytes.Repeat([]byte(fmt.Sprintf("flow %03d|", i)), 4000)); err != nil {
				failed <- fmt.Errorf("flow %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(failed)
	for err := range failed {
		t.Error(err)
	}

	// Nothing listening behind the gateway, and a port outside the
	// permit list: each reaches the application as a refused connection
	// (RST), and the gateway logs why.
	for _, port := range []int{portNothing, portWitness} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := topo.client.dial(ctx, internal(port))
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("port %d through the gateway: connected, want a refused connection", port)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("port %d through the gateway: %v, want connection refused", port, err)
		}
	}
	waitFor(t, "the gateway's refusal in its log", func() bool {
		return strings.Contains(g.log.String(), fmt.Sprintf("port %d is not permitted", portWitness))
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

// gatewaySSH is OpenSSH's ssh in the client namespace, logging in to g
// with its key, with options opts (and a remote command, if any).
func gatewaySSH(topo *topology, g *gatewayProc, opts []string, command ...string) *exec.Cmd {
	args := []string{"ssh", "-F", "/dev/null", "-p", gatewayPort, "-i", g.clientKey,
		"-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + g.knownHosts, "-o", "ExitOnForwardFailure=yes"}
	args = append(append(args, opts...), "anyone@"+gatewayAddr)
	return topo.client.command(append(args, command...)...)
}

// TestGatewayWithOpenSSH: OpenSSH's own client against shunt gateway.
// ssh -N -L carries a 64 MiB download with a matching sha256; a command
// (ssh host command) is refused; a destination outside the permit list is
// refused with the reason; a key's permitopen= limits that key.
func TestGatewayWithOpenSSH(t *testing.T) {
	prerequisites(t, "ssh", "curl")
	topo := newTopology(t)
	s := startServices(t, topo.internal)
	internal := func(port int) string { return net.JoinHostPort(internalAddr, fmt.Sprint(port)) }
	g := gatewayStart(t, topo, "", fmt.Sprintf("%s/32:%d,%d", internalAddr, portDownload, portEcho))

	// ssh -N -L: a local forward through the gateway.
	fwd := gatewaySSH(topo, g, []string{"-N", "-L", fmt.Sprintf("127.0.0.1:18002:%s", internal(portDownload))})
	var fwdLog syncBuffer
	fwd.Stderr = &fwdLog
	if err := fwd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fwd.Process.Kill(); fwd.Wait() })
	file := filepath.Join(t.TempDir(), "download")
	waitFor(t, "the download through ssh -N -L", func() bool {
		return topo.client.command("curl", "-sS", "--fail", "--max-time", "60", "-o", file, "http://127.0.0.1:18002/blob").Run() == nil
	})
	if sha256File(t, file) != s.downloadSum {
		t.Errorf("the download through ssh -N -L and the gateway does not match its sha256")
	}
	fwd.Process.Kill()
	fwd.Wait()
	// The channel is logged with the user, the key's fingerprint and the
	// destination.
	clientFP := strings.Fields(run(t, "ssh-keygen", "-l", "-f", g.clientKey+".pub"))[1]
	opened := regexp.MustCompile(`msg=opened .*dst="` + regexp.QuoteMeta(internal(portDownload)) + `".*`)
	if line := opened.FindString(g.log.String()); !strings.Contains(line, clientFP) || !strings.Contains(line, "user=anyone") {
		t.Errorf("the channel's log line %q lacks the user or the key's fingerprint %s", line, clientFP)
	}

	// ssh host command: no session channels at all.
	cmd := gatewaySSH(topo, g, nil, "true")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("ssh host command through the gateway succeeded:\n%s", out)
	} else if !strings.Contains(string(out), "opens only direct-tcpip channels") {
		t.Errorf("ssh host command: %v, want the gateway's reason:\n%s", err, out)
	}

	// Outside the permit list: refused, with the reason.
	cmd = gatewaySSH(topo, g, []string{"-W", internal(portUpload)})
	cmd.Stdin = strings.NewReader("x")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not permitted") {
		t.Errorf("ssh -W outside the permit list: %v, want a refusal that says it is not permitted:\n%s", err, out)
	}
	g.stop(t)

	// A key whose permitopen= names only the echo port.
	g = gatewayStart(t, topo, fmt.Sprintf(`permitopen="%s"`, internal(portEcho)), fmt.Sprintf("%s/32", internalAddr))
	cmd = gatewaySSH(topo, g, []string{"-W", internal(portEcho)})
	cmd.Stdin = strings.NewReader("allowed by permitopen\n")
	if out, err := cmd.Output(); err != nil || string(out) != "allowed by permitopen\n" {
		t.Errorf("ssh -W to the port permitopen= names: %q, %v", out, err)
	}
	cmd = gatewaySSH(topo, g, []string{"-W", internal(portDownload)})
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "permitopen") {
		t.Errorf("ssh -W to a port permitopen= does not name (the permit list allows it): %v, want a refusal naming permitopen:\n%s", err, out)
	}
	g.stop(t)
}
