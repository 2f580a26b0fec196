//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

const (
	lanHost    = "172.31.5.2" // another host on shunt's LAN
	lanGateway = "172.31.5.1" // shunt's host, on that LAN
)

// addLANHost adds a host on a LAN of the client's (shunt's host), which
// routes the internal network via the client, with forwarding on there.
func addLANHost(t *testing.T, topo *topology) *ns {
	t.Helper()
	name := "shunt-" + topo.id + "-l"
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	lan := &ns{name: name, h: h}
	lan.exec(t, "ip", "link", "set", "lo", "up")
	va, vb := "sh"+topo.id+"m", "sh"+topo.id+"n"
	run(t, "ip", "link", "add", va, "netns", topo.client.name, "type", "veth", "peer", "name", vb, "netns", name)
	topo.client.exec(t, "ip", "addr", "add", lanGateway+"/24", "dev", va)
	lan.exec(t, "ip", "addr", "add", lanHost+"/24", "dev", vb)
	topo.client.exec(t, "ip", "link", "set", va, "up")
	lan.exec(t, "ip", "link", "set", vb, "up")
	lan.exec(t, "ip", "route", "add", "172.31.2.0/24", "via", lanGateway)
	topo.client.exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return lan
}

// shunt as a LAN gateway: another host routes the internal network via
// shunt's host (forwarding on). Its flows are tunnelled where a rule's
// sources cover it, refused (RST) where none does, with the fix logged;
// the host's own flows go on as before.
func TestLANGateway(t *testing.T) {
	prerequisites(t, "sysctl")
	topo := newTopology(t)
	lan := addLANHost(t, topo)
	sd := startSSHD(t, topo.gateway)
	echoOn(t, topo.internal, internalAddr+":9003")
	echoOn(t, topo.internal, internalAddr+":9004")
	sh := startShunt(t, topo, shuntConfig(topo, sd, sd.knownHosts, `  - name: lan
    sources: [172.31.5.0/24]
    destinations: [172.31.2.0/24]
    ports: [9003]
    action: tunnel
    profile: gw
  - name: this-host
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw`))

	t.Run("a source the rule covers is tunnelled", func(t *testing.T) {
		payload := []byte(strings.Repeat("from the LAN|", 20000))
		if err := echo(lan, internalAddr+":9003", payload); err != nil {
			t.Fatalf("LAN host through shunt: %v", err)
		}
		// Over the LAN's 1500-byte link, the flow is the LAN host's in
		// shunt's table: nothing else reaches the internal host.
		if !strings.Contains(sh.log.String(), `src="`+lanHost+`:`) {
			t.Error("shunt logged no flow from the LAN host")
		}
	})
	t.Run("no rule's sources cover it: refused", func(t *testing.T) {
		err := echo(lan, internalAddr+":9004", []byte("x"))
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("LAN host to a port no sources rule covers: %v, want connection refused", err)
		}
		waitFor(t, "the warning with the fix", func() bool {
			return strings.Contains(sh.log.String(), "sources:") && strings.Contains(sh.log.String(), lanHost)
		})
	})
	t.Run("the host's own flows", func(t *testing.T) {
		for _, port := range []int{9003, 9004} {
			if err := echo(topo.client, fmt.Sprintf("%s:%d", internalAddr, port), []byte("from shunt's host")); err != nil {
				t.Fatalf("shunt's host to port %d: %v", port, err)
			}
		}
	})
	t.Run("explain --from", func(t *testing.T) {
		out, _ := topo.client.command(shuntBin, "explain", "--global", "", "--user-config", "", "-c", writeConfig(t, shuntConfig(topo, sd, sd.knownHosts, `  - name: lan
    sources: [172.31.5.0/24]
    destinations: [172.31.2.0/24]
    ports: [9003]
    action: tunnel
    profile: gw`)), "--from", lanHost, internalAddr+":9004").CombinedOutput()
		if !strings.Contains(string(out), "refused") || !strings.Contains(string(out), "sources") {
			t.Errorf("explain --from %s: %s", lanHost, out)
		}
	})
	sh.stop(t)
}

// writeConfig writes a configuration file of the test's and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := t.TempDir() + "/shunt.yaml"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
