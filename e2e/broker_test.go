//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The broker against real servers. The topology adds a proxy host:
//
//	client ── proxy ── gateway ── internal
//	   └──────────────────┘ (172.31.1.0/24)
//
// The gateway's address 172.31.8.2 is reachable only through the proxy
// host (which runs dante, tinyproxy and a bastion sshd, and forwards
// nothing); 172.31.1.1 directly. Nobody forwards packets.
const (
	proxyClientSide = "172.31.7.1"
	clientProxySide = "172.31.7.2"
	proxyGwSide     = "172.31.8.1"
	gatewayBehind   = "172.31.8.2" // only via the proxy host
	gatewayNoSSHD   = "172.31.1.3" // a gateway address without sshd
)

type brokerTopo struct {
	*topology
	proxy *ns
}

func newBrokerTopology(t *testing.T) *brokerTopo {
	t.Helper()
	topo := newTopology(t)
	bt := &brokerTopo{topology: topo}
	name := fmt.Sprintf("shunt-%s-p", topo.id)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netnsFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	bt.proxy = &ns{name: name, h: h}
	bt.proxy.exec(t, "ip", "link", "set", "lo", "up")
	veth := func(a, b *ns, an, bn, aAddr, bAddr string) {
		va, vb := "sh"+topo.id+an, "sh"+topo.id+bn
		run(t, "ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", "name", vb, "netns", b.name)
		a.exec(t, "ip", "addr", "add", aAddr+"/24", "dev", va)
		b.exec(t, "ip", "addr", "add", bAddr+"/24", "dev", vb)
		a.exec(t, "ip", "link", "set", va, "up")
		b.exec(t, "ip", "link", "set", vb, "up")
	}
	veth(topo.client, bt.proxy, "x", "p", clientProxySide, proxyClientSide)
	veth(bt.proxy, topo.gateway, "q", "r", proxyGwSide, gatewayBehind)
	topo.gateway.exec(t, "ip", "addr", "add", gatewayNoSSHD+"/24", "dev", "sh"+topo.id+"g")
	topo.gateway.exec(t, "ip", "addr", "add", "172.31.1.4/24", "dev", "sh"+topo.id+"g") // the PAM sshd
	return bt
}

// echoOn serves an echo.
func echoOn(t *testing.T, host *ns, addr string) {
	t.Helper()
	host.serve(t, addr, func(c net.Conn) { io.Copy(c, c) })
}

// tunnelConfig is a config with one profile, "gw", tunnelling the internal
// network. profile holds the profile's keys after "name: gw", indented by
// four spaces; extra is appended at the top level.
func tunnelConfig(topo *topology, profile, extra string) string {
	return fmt.Sprintf(`profiles:
  - name: gw
%s
rules:
  - name: internal
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw
%s
tun:
  name: %s
log:
  level: debug
`, profile, extra, topo.tunName())
}

// askpass writes an SSH_ASKPASS program that answers every prompt with
// answer and logs the prompts it was shown.
func askpass(t *testing.T, answer string) (program, log string) {
	t.Helper()
	dir := t.TempDir()
	program, log = filepath.Join(dir, "askpass"), filepath.Join(dir, "asked")
	os.WriteFile(program, []byte("#!/bin/sh\necho \"$1\" >> "+log+"\necho '"+answer+"'\n"), 0o700)
	return program, log
}

// testUser creates a local user with a password, removed when the test
// ends. OpenSSH checks the password against /etc/shadow.
func testUser(t *testing.T) (name, password string) {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	name, password = "shunt"+hex.EncodeToString(b), "pw-"+hex.EncodeToString(b)
	run(t, "useradd", "--no-create-home", "--shell", "/bin/sh", name)
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return name, password
}

// daemon starts a long-running program in a namespace, stopped at cleanup.
func daemon(t *testing.T, host *ns, args ...string) *syncBuffer {
	t.Helper()
	log := &syncBuffer{}
	cmd := host.command(args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return log
}

func waitListening(t *testing.T, host *ns, addr string) {
	t.Helper()
	waitFor(t, addr+" to listen", func() bool {
		c, err := host.dial(context.Background(), addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func TestBrokerAgainstRealServers(t *testing.T) {
	prerequisites(t, "danted", "tinyproxy", "ssh-agent", "ssh-add", "useradd", "chpasswd")
	topo := newBrokerTopology(t)
	dir := t.TempDir()
	// A user CA and a host CA.
	userCA, hostCA := filepath.Join(dir, "user_ca"), filepath.Join(dir, "host_ca")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", userCA)
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostCA)
	user, password := testUser(t)
	sd := startSSHDWith(t, topo.gateway, sshdOptions{
		listen: []string{gatewayAddr, gatewayBehind},
		hostCA: hostCA,
		extra: []string{
			"TrustedUserCAKeys " + userCA + ".pub",
			"Match User " + user,
			"  PasswordAuthentication yes",
			"Match all",
		},
	})
	echoOn(t, topo.internal, "172.31.2.2:9003")
	target := "172.31.2.2:9003"

	// keyProfile is the plain key-file profile; host picks the address.
	keyProfile := func(host string) string {
		return fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", host, sd.clientKey, sd.knownHosts)
	}
	// through checks that a flow gets through shunt with profile.
	through := func(t *testing.T, profile, extra string, env ...string) *shunt {
		t.Helper()
		sh := startShuntEnv(t, topo.topology, tunnelConfig(topo.topology, profile, extra), env...)
		echoCheck(t, topo.client, target, []byte("through "+t.Name()))
		return sh
	}

	t.Run("key file, single flight of 100 first flows", func(t *testing.T) {
		before := sd.logins()
		sh := startShunt(t, topo.topology, tunnelConfig(topo.topology, keyProfile(gatewayAddr), ""))
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := echo(topo.client, target, []byte(fmt.Sprintf("first flow %d", i))); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := sd.logins() - before; n != 1 {
			t.Fatalf("100 simultaneous first flows made %d logins, want 1", n)
		}
		sh.stop(t)
	})

	t.Run("connections: 4 spreads 16 flows", func(t *testing.T) {
		before := sd.logins()
		sh := startShunt(t, topo.topology, tunnelConfig(topo.topology, keyProfile(gatewayAddr)+"\n    connections: 4", ""))
		var conns []net.Conn
		for i := range 16 {
			c, err := topo.client.dial(context.Background(), target)
			if err != nil {
				t.Fatalf("flow %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Write([]byte("x"))
			io.ReadFull(c, make([]byte, 1))
		}
		if n := sd.logins() - before; n != 4 {
			t.Errorf("16 concurrent flows made %d logins, want 4", n)
		}
		out := topo.gateway.exec(t, "ss", "-Htn", "state", "established", "( sport = :22 )")
		if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 4 {
			t.Errorf("%d SSH connections at the gateway, want 4:\n%s", n, out)
		}
		for _, c := range conns {
			c.Close()
		}
		sh.stop(t)
	})

	t.Run("encrypted key answered through SSH_ASKPASS", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "id_enc")
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", key)
		sd.authorize(t, key+".pub")
		prog, asked := askpass(t, "open sesame")
		sh := through(t, fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, key, sd.knownHosts), "",
			"SSH_ASKPASS="+prog, "SSH_ASKPASS_REQUIRE=force")
		b, _ := os.ReadFile(asked)
		if !strings.Contains(string(b), "Enter passphrase for key '"+key+"'") {
			t.Errorf("askpass was asked %q", b)
		}
		if strings.Contains(sh.log.String(), "open sesame") {
			t.Error("the passphrase appears in the log")
		}
		sh.stop(t)
	})

	t.Run("ssh-agent", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "id_agent")
		run(t, "ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", key)
		sd.authorize(t, key+".pub")
		sock := filepath.Join(t.TempDir(), "agent.sock")
		daemon(t, topo.client, "ssh-agent", "-D", "-a", sock)
		waitFor(t, "ssh-agent", func() bool { _, err := os.Stat(sock); return err == nil })
		add := exec.Command("ssh-add", key)
		add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
		if out, err := add.CombinedOutput(); err != nil {
			t.Fatalf("ssh-add: %v\n%s", err, out)
		}
		fp := strings.Fields(run(t, "ssh-keygen", "-l", "-f", key+".pub"))[1]
		sh := through(t, fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, key+"-not-here", sd.knownHosts), "",
			"SSH_AUTH_SOCK="+sock)
		if !strings.Contains(sd.log.String(), "Accepted publickey for root") || !strings.Contains(sd.log.String(), fp) {
			t.Errorf("sshd did not log the agent's key %s", fp)
		}
		sh.stop(t)
	})

	t.Run("certificate signed by the user CA", func(t *testing.T) {
		key := filepath.Join(t.TempDir(), "id_cert")
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
		run(t, "ssh-keygen", "-q", "-s", userCA, "-I", "shunt-test", "-n", "root", key+".pub")
		sh := through(t, fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, key, sd.knownHosts), "")
		if !strings.Contains(sd.log.String(), "Accepted publickey for root") || !strings.Contains(sd.log.String(), "ID shunt-test") {
			t.Errorf("sshd did not log the certificate login")
		}
		sh.stop(t)
	})

	t.Run("password for a local user", func(t *testing.T) {
		prog, _ := askpass(t, password)
		sh := through(t, fmt.Sprintf("    host: %s\n    user: %s\n    auth_methods: [password]\n    known_hosts: %s", gatewayAddr, user, sd.knownHosts), "",
			"SSH_ASKPASS="+prog, "SSH_ASKPASS_REQUIRE=force")
		if !strings.Contains(sd.log.String(), "Accepted password for "+user) {
			t.Errorf("sshd did not log the password login")
		}
		if strings.Contains(sh.log.String(), password) {
			t.Error("the password appears in the log")
		}
		sh.stop(t)
	})

	t.Run("keyboard-interactive through PAM", func(t *testing.T) {
		// sshd offers keyboard-interactive through PAM, which asks
		// pam_unix's "Password: ".
		kbd := startSSHDWith(t, topo.gateway, sshdOptions{
			listen: []string{"172.31.1.4"},
			extra:  []string{"UsePAM yes", "KbdInteractiveAuthentication yes", "AuthenticationMethods keyboard-interactive"},
		})
		prog, asked := askpass(t, password)
		sh := through(t, fmt.Sprintf("    host: 172.31.1.4\n    user: %s\n    auth_methods: [keyboard-interactive]\n    known_hosts: %s", user, kbd.knownHosts), "",
			"SSH_ASKPASS="+prog, "SSH_ASKPASS_REQUIRE=force")
		if !strings.Contains(kbd.log.String(), "Accepted keyboard-interactive/pam for "+user) {
			t.Errorf("sshd did not log a keyboard-interactive login:\n%s", kbd.log)
		}
		if b, _ := os.ReadFile(asked); !strings.Contains(string(b), "Password:") {
			t.Errorf("askpass was asked %q, want PAM's Password: prompt", b)
		}
		sh.stop(t)
	})

	t.Run("known_hosts forms", func(t *testing.T) {
		hostPub, _ := os.ReadFile(sd.hostKey + ".pub")
		caPub, _ := os.ReadFile(hostCA + ".pub")
		kh := func(content string) string {
			f := filepath.Join(t.TempDir(), "known_hosts")
			os.WriteFile(f, []byte(content), 0o600)
			return f
		}
		hashed := kh(gatewayAddr + " " + string(hostPub))
		run(t, "ssh-keygen", "-q", "-H", "-f", hashed)
		other := filepath.Join(t.TempDir(), "other")
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other)
		otherPub, _ := os.ReadFile(other + ".pub")
		otherFP := strings.Fields(run(t, "ssh-keygen", "-l", "-f", other+".pub"))[1]
		changed := kh("# first line\n" + gatewayAddr + " " + string(otherPub))
		profile := func(knownHosts, policy string) string {
			p := fmt.Sprintf("    host: %s\n    user: root\n    identity_files: [%s]\n    known_hosts: %s", gatewayAddr, sd.clientKey, knownHosts)
			if policy != "" {
				p += "\n    host_key_policy: " + policy
			}
			return p
		}
		t.Run("hashed", func(t *testing.T) {
			if b, _ := os.ReadFile(hashed); !strings.HasPrefix(string(b), "|1|") {
				t.Fatalf("ssh-keygen -H did not hash: %q", b)
			}
			through(t, profile(hashed, ""), "").stop(t)
		})
		t.Run("cert-authority", func(t *testing.T) {
			through(t, profile(kh("@cert-authority 172.31.1.* "+string(caPub)), ""), "").stop(t)
		})
		refused := func(t *testing.T, knownHosts, policy string, want ...string) {
			t.Helper()
			sh := startShunt(t, topo.topology, tunnelConfig(topo.topology, profile(knownHosts, policy), ""))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := topo.client.dial(ctx, target); !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial: %v, want connection refused", err)
			}
			waitFor(t, "the refusal in the log", func() bool {
				for _, w := range want {
					if !strings.Contains(sh.log.String(), w) {
						return false
					}
				}
				return true
			})
			sh.stop(t)
		}
		t.Run("revoked", func(t *testing.T) {
			refused(t, kh("@revoked * "+string(hostPub)+gatewayAddr+" "+string(hostPub)), "", "REVOKED")
		})
		t.Run("changed key names both fingerprints", func(t *testing.T) {
			refused(t, changed, "accept-new", "has CHANGED", otherFP, sd.fingerprint, changed+":2")
		})
		t.Run("accept-new writes the file", func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "new", "known_hosts")
			through(t, profile(f, "accept-new"), "").stop(t)
			b, err := os.ReadFile(f)
			if err != nil || !strings.HasPrefix(string(b), gatewayAddr+" ssh-ed25519 ") {
				t.Fatalf("known_hosts after accept-new: %q, %v", b, err)
			}
			// OpenSSH agrees with what was written.
			out, _ := exec.Command("ssh-keygen", "-F", gatewayAddr, "-f", f).CombinedOutput()
			if !strings.Contains(string(out), "found: line 1") {
				t.Fatalf("ssh-keygen -F does not find the recorded key:\n%s", out)
			}
		})
	})

	// The proxies: the gateway's address behind the proxy host.
	danted := func(t *testing.T, port int, method string) {
		conf := filepath.Join(t.TempDir(), "danted.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf(`logoutput: stderr
internal: %s port = %d
external: %s
clientmethod: none
socksmethod: %s
user.privileged: root
user.unprivileged: nobody
client pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
}
socks pass {
  from: 0.0.0.0/0 to: 0.0.0.0/0
  command: connect
}
`, proxyClientSide, port, proxyGwSide, method)), 0o600)
		daemon(t, topo.proxy, "danted", "-f", conf, "-p", filepath.Join(t.TempDir(), "danted.pid"))
		waitListening(t, topo.proxy, fmt.Sprintf("%s:%d", proxyClientSide, port))
	}
	t.Run("SOCKS4 through dante", func(t *testing.T) {
		danted(t, 1080, "none")
		through(t, keyProfile(gatewayBehind)+"\n    proxy: socks4://"+proxyClientSide+":1080", "").stop(t)
	})
	t.Run("SOCKS5 through dante", func(t *testing.T) {
		danted(t, 1081, "none")
		through(t, keyProfile(gatewayBehind)+"\n    proxy: socks5://"+proxyClientSide+":1081", "").stop(t)
	})
	t.Run("SOCKS5 with a user through dante", func(t *testing.T) {
		danted(t, 1082, "username")
		sh := through(t, keyProfile(gatewayBehind)+fmt.Sprintf("\n    proxy: socks5://%s:%s@%s:1082", user, password, proxyClientSide), "")
		if strings.Contains(sh.log.String(), password) {
			t.Error("the proxy password appears in the log")
		}
		sh.stop(t)
	})
	t.Run("HTTP CONNECT through tinyproxy, chosen by a proxy rule", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "tinyproxy.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("Port 8888\nListen %s\nTimeout 60\nAllow %s\nConnectPort 22\nPidFile \"%s\"\nBasicAuth proxyuser proxypass\n",
			proxyClientSide, clientProxySide, filepath.Join(t.TempDir(), "tp.pid"))), 0o600)
		daemon(t, topo.proxy, "tinyproxy", "-d", "-c", conf)
		waitListening(t, topo.proxy, proxyClientSide+":8888")
		rules := fmt.Sprintf("proxy_rules:\n  - destinations: [172.31.8.0/24]\n    proxy: http://proxyuser:proxypass@%s:8888\n  - proxy: direct", proxyClientSide)
		sh := through(t, keyProfile(gatewayBehind), rules)
		if !strings.Contains(sh.log.String(), "via http://proxyuser:xxxxx@"+proxyClientSide+":8888 (proxy rule 1)") {
			t.Error("the log does not say which proxy rule was used (with the password redacted)")
		}
		sh.stop(t)
	})

	t.Run("jump through a second sshd", func(t *testing.T) {
		bastion := startSSHDWith(t, topo.proxy, sshdOptions{listen: []string{proxyClientSide}})
		cfg := fmt.Sprintf(`profiles:
  - name: bastion
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
  - name: gw
    jump: bastion
%s
rules:
  - destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw
tun:
  name: %s
`, proxyClientSide, bastion.clientKey, bastion.knownHosts, keyProfile(gatewayBehind), topo.tunName())
		before := sd.logins()
		sh := startShunt(t, topo.topology, cfg)
		echoCheck(t, topo.client, target, []byte("two hops"))
		if bastion.logins() != 1 || sd.logins()-before != 1 {
			t.Errorf("logins: bastion %d, gateway %d; want 1 each", bastion.logins(), sd.logins()-before)
		}
		sh.stop(t)
	})

	t.Run("failover to the second host", func(t *testing.T) {
		sh := through(t, fmt.Sprintf("    host: [%s, %s]\n    user: root\n    identity_files: [%s]\n    known_hosts: %s",
			gatewayNoSSHD, gatewayAddr, sd.clientKey, sd.knownHosts), "")
		if !strings.Contains(sh.log.String(), `msg="failed over to the next host"`) || !strings.Contains(sh.log.String(), "server=\"172.31.1.1:22\"") {
			t.Error("the log does not say which host answered")
		}
		sh.stop(t)
	})

	t.Run("sshd killed mid-transfer, then back", func(t *testing.T) {
		sh := startShunt(t, topo.topology, tunnelConfig(topo.topology, keyProfile(gatewayAddr)+"\n    keepalive_interval: 1s\n    keepalive_count: 3", ""))
		c, err := topo.client.dial(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The reset reaches whichever call sees it first: the writer or
		// the reader.
		writeErr := make(chan error, 1)
		go func() {
			buf := bytes.Repeat([]byte("x"), 32<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					writeErr <- err
					return
				}
			}
		}()
		io.CopyN(io.Discard, c, 1<<20)
		sd.killAll()
		defer func() {
			if sd.cmd.ProcessState != nil {
				sd.start(t)
			}
		}()
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, readErr := io.Copy(io.Discard, c)
		var wErr error
		select {
		case wErr = <-writeErr:
		case <-time.After(10 * time.Second):
		}
		if !errors.Is(readErr, syscall.ECONNRESET) && !errors.Is(wErr, syscall.ECONNRESET) {
			t.Fatalf("the flow ended with read %v, write %v; want a reset", readErr, wErr)
		}
		// Detection takes keepalive interval × count (3 s here); the
		// 10 s read deadline above only tells "detected" from "never",
		// whatever the machine's load.
		t.Logf("flow reset %v after sshd died (keepalive bound: 3 s)", time.Since(start).Round(time.Millisecond))
		sd.start(t)
		waitFor(t, "a new flow to succeed", func() bool { return echo(topo.client, target, []byte("back")) == nil })
		if !strings.Contains(sh.log.String(), "SSH connection lost") {
			t.Error("the log does not report the lost connection")
		}
		sh.stop(t)
	})

	t.Run("gateway link cut is detected within interval × count", func(t *testing.T) {
		sh := startShunt(t, topo.topology, tunnelConfig(topo.topology, keyProfile(gatewayAddr)+"\n    keepalive_interval: 1s\n    keepalive_count: 2", ""))
		c, err := topo.client.dial(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTripConn(t, c, "before the cut")
		link := "sh" + topo.id + "g"
		topo.gateway.exec(t, "ip", "link", "set", link, "down")
		defer topo.gateway.exec(t, "ip", "link", "set", link, "up")
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		_, err = io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the flow ended with %v, want a reset", err)
		}
		// interval × count is 2 s; the 15 s read deadline only tells
		// "detected by the keepalives" (the default ones would take 45 s)
		// from "never", whatever the machine's load.
		t.Logf("dead link detected after %v (keepalive bound: 2 s)", time.Since(start).Round(time.Millisecond))
		// The flows are reset as the connection is dropped, and the
		// warning may be written just after.
		waitFor(t, "the log to say why the connection was closed", func() bool {
			return strings.Contains(sh.log.String(), "stopped answering keepalives")
		})
		sh.stop(t)
	})
}

func roundTripConn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
}
