//go:build linux

package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// peerEcho answers every connection with the address it came from: the
// client's own address for a direct flow, the SSH server's for a tunnelled
// one.
func peerEcho(t *testing.T, host *ns, addr string) {
	t.Helper()
	host.serve(t, addr, func(c net.Conn) {
		peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "%s\n", peer)
	})
}

// peerSeen connects with a real client, run as given (program path, and
// optionally a uid), and returns the address the server saw.
func peerSeen(t *testing.T, client *ns, program string, uid int, addr string) string {
	t.Helper()
	args := []string{program, "-T", "10", "-", "TCP:" + addr}
	if uid >= 0 {
		args = append([]string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups"}, args...)
	}
	cmd := client.command(args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s to %s: %v\n%s", strings.Join(args, " "), addr, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestRuleModelEndToEnd(t *testing.T) {
	prerequisites(t, "socat", "dnsmasq", "setpriv")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	topo.client.exec(t, "ip", "-6", "route", "add", "default", "via", gateway6)
	sd := startSSHD(t, topo.gateway)
	peerEcho(t, topo.gateway, gatewayAddr+":7000")
	peerEcho(t, topo.gateway, "["+gateway6+"]:7000")
	peerEcho(t, topo.internal, "[::]:9005")
	gwProfile := fmt.Sprintf(`  - name: gw
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s`, gatewayAddr, sd.clientKey, sd.knownHosts)
	config := func(profiles, rules string) string {
		return fmt.Sprintf("profiles:\n%s\n%s\nrules:\n%s\ntun:\n  name: %s\nlog:\n  level: debug\n", gwProfile, profiles, rules, topo.tunName())
	}
	// Two copies of socat under different names: two applications.
	bin := t.TempDir()
	os.Chmod(bin, 0o755)
	for _, name := range []string{"socat-tunnel", "socat-direct"} {
		run(t, "cp", "/usr/bin/socat", filepath.Join(bin, name))
	}
	tunnelled, direct := filepath.Join(bin, "socat-tunnel"), filepath.Join(bin, "socat-direct")
	service := gatewayAddr + ":7000"

	t.Run("applications: two executables, same destination", func(t *testing.T) {
		sh := startShunt(t, topo, config("", fmt.Sprintf(`  - name: direct-app
    applications: [socat-direct]
    destinations: [%s, "%s"]
    ports: [7000]
    action: direct
  - name: the-rest
    destinations: [%s, "%s"]
    ports: [7000]
    action: tunnel
    profile: gw`, gatewayAddr, gateway6, gatewayAddr, gateway6)))
		if got := peerSeen(t, topo.client, tunnelled, -1, service); got != gatewayAddr {
			t.Errorf("socat-tunnel was seen from %s, want %s (through the tunnel)", got, gatewayAddr)
		}
		if got := peerSeen(t, topo.client, direct, -1, service); got != clientAddr {
			t.Errorf("socat-direct was seen from %s, want %s (direct)", got, clientAddr)
		}
		// The same over IPv6.
		service6 := "[" + gateway6 + "]:7000"
		if got := peerSeen(t, topo.client, tunnelled, -1, service6); got != gateway6 {
			t.Errorf("IPv6: socat-tunnel was seen from %s, want %s (through the tunnel)", got, gateway6)
		}
		if got := peerSeen(t, topo.client, direct, -1, service6); got != client6 {
			t.Errorf("IPv6: socat-direct was seen from %s, want %s (direct)", got, client6)
		}
		if !strings.Contains(sh.log.String(), "app="+direct) {
			t.Error("the log does not name the application")
		}
		sh.stop(t)
	})

	t.Run("users: two uids, same destination", func(t *testing.T) {
		sh := startShunt(t, topo, config("", fmt.Sprintf(`  - name: nobody-direct
    users: [nobody]
    destinations: [%s]
    ports: [7000]
    action: direct
  - destinations: [%s]
    ports: [7000]
    action: tunnel
    profile: gw`, gatewayAddr, gatewayAddr)))
		if got := peerSeen(t, topo.client, "/usr/bin/socat", 0, service); got != gatewayAddr {
			t.Errorf("root was seen from %s, want the tunnel (%s)", got, gatewayAddr)
		}
		if got := peerSeen(t, topo.client, "/usr/bin/socat", 65534, service); got != clientAddr {
			t.Errorf("nobody was seen from %s, want direct (%s)", got, clientAddr)
		}
		sh.stop(t)
	})

	t.Run("host_from_application reaches sshd on the destination itself", func(t *testing.T) {
		inner := startSSHDWith(t, topo.internal, sshdOptions{listen: []string{internalAddr}})
		before := inner.logins()
		profiles := fmt.Sprintf(`  - name: end-to-end
    jump: gw
    user: root
    identity_files: [%s]
    known_hosts: %s`, inner.clientKey, inner.knownHosts)
		sh := startShunt(t, topo, config(profiles, `  - destinations: [172.31.2.0/24]
    ports: [9005]
    action: tunnel
    profile: end-to-end
    host_from_application: true`))
		if got := peerSeen(t, topo.client, "/usr/bin/socat", -1, internalAddr+":9005"); got != internalAddr {
			t.Errorf("the service saw %s, want the host itself (%s): the server connected to itself", got, internalAddr)
		}
		if inner.logins()-before != 1 {
			t.Errorf("the internal host's sshd logged %d logins, want 1", inner.logins()-before)
		}
		sh.stop(t)
	})

	t.Run("fallback_direct when the gateway's sshd is stopped", func(t *testing.T) {
		sd.stop()
		defer sd.start(t)
		sh := startShunt(t, topo, config("", fmt.Sprintf(`  - destinations: [%s]
    ports: [7000]
    action: tunnel
    profile: gw
    fallback_direct: true`, gatewayAddr)))
		if got := peerSeen(t, topo.client, "/usr/bin/socat", -1, service); got != clientAddr {
			t.Errorf("seen from %s, want direct (%s)", got, clientAddr)
		}
		if !strings.Contains(sh.log.String(), "falling back to direct") {
			t.Error("the fallback was not logged")
		}
		sh.stop(t)
	})

	t.Run("a host-name rule follows a changing DNS answer", func(t *testing.T) {
		// dnsmasq on the gateway answers for svc.shunt.test; the client's
		// resolv.conf (ip netns exec binds /etc/netns/NAME/) points at it.
		dir := t.TempDir()
		hosts := filepath.Join(dir, "hosts")
		os.WriteFile(hosts, []byte(internalAddr+" svc.shunt.test\n"), 0o644)
		dm := topo.gateway.command("dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", "--addn-hosts="+hosts,
			"--listen-address="+gatewayAddr, "--bind-interfaces", "--local-ttl=1", "--log-queries", "--log-facility=-",
			"--pid-file="+filepath.Join(dir, "pid"), "--user=root")
		dmLog := &syncBuffer{}
		dm.Stdout, dm.Stderr = dmLog, dmLog
		if err := dm.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { dm.Process.Kill(); dm.Wait() }()
		etc := "/etc/netns/" + topo.client.name
		os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("nameserver "+gatewayAddr+"\n"), 0o644)
		defer os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(nsResolvConf), 0o644)
		waitFor(t, "dnsmasq", func() bool { return strings.Contains(dmLog.String(), "started") })
		// A second address on the internal host, for the new answer.
		second := "172.31.2.3"
		topo.internal.exec(t, "ip", "addr", "add", second+"/24", "dev", "sh"+topo.id+"i")
		// Split DNS off: the name is resolved here and its addresses
		// routed (with split DNS, applications would get a fake IP).
		sh := startShunt(t, topo, config("", `  - name: svc
    destinations: [svc.shunt.test]
    action: tunnel
    profile: gw`)+"dns:\n  enabled: false\n")
		routed := func(addr string) bool {
			out, _ := topo.client.command("ip", "route", "get", addr).CombinedOutput()
			return strings.Contains(string(out), "dev "+topo.tunName())
		}
		if !routed(internalAddr) || routed(second) {
			t.Fatalf("routes at start: %s routed %v, %s routed %v", internalAddr, routed(internalAddr), second, routed(second))
		}
		if got := peerSeen(t, topo.client, "/usr/bin/socat", -1, internalAddr+":9005"); got != gatewayInner {
			t.Errorf("seen from %s, want the gateway (%s)", got, gatewayInner)
		}
		os.WriteFile(hosts, []byte(second+" svc.shunt.test\n"), 0o644)
		dm.Process.Signal(sigHUP)
		waitFor(t, "the route to follow the new answer", func() bool { return routed(second) && !routed(internalAddr) })
		if got := peerSeen(t, topo.client, "/usr/bin/socat", -1, second+":9005"); got != gatewayInner {
			t.Errorf("after the change: seen from %s, want the gateway (%s)", got, gatewayInner)
		}
		if !strings.Contains(sh.log.String(), `msg="host name resolved"`) {
			t.Error("the log does not show the resolution")
		}
		sh.stop(t)
	})
}
