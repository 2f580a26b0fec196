//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// refusedFor connects as uid with a real client and fails unless the
// connection is refused.
func refusedFor(t *testing.T, client *ns, uid int, addr string) {
	t.Helper()
	args := []string{"setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups", "/usr/bin/socat", "-T", "10", "-", "TCP:" + addr}
	cmd := client.command(args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Connection refused") {
		t.Fatalf("uid %d to %s: %v\n%s\nwant a refused connection", uid, addr, err, out)
	}
}

// A flow rides on an SSH identity only if it belongs to the identity's
// user: shunt up, as root, tunnels root's flows and refuses another
// user's (nobody, uid 65534), saying so with the uid; under sudo it is the
// other way round, the user who ran sudo being the one shunt acts for.
func TestFlowsOfOtherUsersRefused(t *testing.T) {
	prerequisites(t, "socat", "setpriv")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	peerEcho(t, topo.gateway, gatewayAddr+":7000")
	config := fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
rules:
  - destinations: [%s]
    ports: [7000]
    action: tunnel
    profile: gw
tun:
  name: %s
`, gatewayAddr, sd.clientKey, sd.knownHosts, gatewayAddr, topo.tunName())
	service := gatewayAddr + ":7000"

	t.Run("shunt up as root", func(t *testing.T) {
		sh := startShuntEnv(t, topo, config, "SUDO_USER=")
		if got := peerSeen(t, topo.client, "/usr/bin/socat", 0, service); got != gatewayAddr {
			t.Errorf("root's flow was seen from %s, want the tunnel (%s)", got, gatewayAddr)
		}
		refusedFor(t, topo.client, 65534, service)
		log := sh.log.String()
		for _, want := range []string{"uid=65534", "this flow is uid 65534's", "allowed_users", "app=/usr/bin/socat", "profile=gw"} {
			if !strings.Contains(log, want) {
				t.Errorf("the log does not contain %q", want)
			}
		}
		sh.stop(t)
	})

	t.Run("shunt up under sudo by nobody", func(t *testing.T) {
		sh := startShuntEnv(t, topo, config, "SUDO_USER=nobody")
		if got := peerSeen(t, topo.client, "/usr/bin/socat", 65534, service); got != gatewayAddr {
			t.Errorf("nobody's flow was seen from %s, want the tunnel (%s)", got, gatewayAddr)
		}
		refusedFor(t, topo.client, 0, service)
		if log := sh.log.String(); !strings.Contains(log, "this flow is uid 0's") {
			t.Error("the log does not name root's refused flow")
		}
		sh.stop(t)
	})
}
