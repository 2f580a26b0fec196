//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With kill_switch: true, a crashed shunt (SIGKILL) leaves the captured
// destinations unreachable: an application's connection fails at once
// with "no route to host" instead of leaving by the normal route; the SSH
// server, inside the captured range, stays reachable. shunt cleanup then
// gives normal routing back, and a new start works.
func TestKillSwitchAfterSIGKILL(t *testing.T) {
	prerequisites(t)
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	echo := net.JoinHostPort(internalAddr, fmt.Sprint(portEcho))
	echoOn(t, topo.internal, echo)
	// The captured range covers the gateway, the SSH server itself.
	rules := `  - name: everything-172
    destinations: [172.31.0.0/16]
    action: tunnel
    profile: gw`
	config := shuntConfig(topo, sd, sd.knownHosts, rules) + "kill_switch: true\n"
	sh := startShunt(t, topo, config)
	echoCheck(t, topo.client, echo, []byte("through the tunnel"))
	sh.kill()

	routeGet := func() string {
		out, _ := topo.client.command("ip", "route", "get", internalAddr).CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	// The kernel removes the TUN with the process; until then its routes
	// still win.
	waitFor(t, "the TUN device to go with the killed process", func() bool {
		return topo.client.command("ip", "link", "show", topo.tunName()).Run() != nil
	})
	if got := routeGet(); !strings.Contains(got, "No route to host") {
		t.Errorf("ip route get %s after the crash: %q, want no route to host", internalAddr, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := topo.client.dial(ctx, echo)
	if err == nil {
		c.Close()
		t.Fatal("a connection to a captured address got through after the crash")
	}
	if !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Errorf("a connection to a captured address after the crash: %v, want no route to host at once", err)
	}
	// The SSH server is exempt: it answers on the normal route.
	if c, err := topo.client.dial(ctx, net.JoinHostPort(gatewayAddr, "22")); err != nil {
		t.Errorf("the SSH server is unreachable after the crash: %v", err)
	} else {
		c.Close()
	}
	// Loopback is never touched.
	if out, _ := topo.client.command("ip", "route", "get", "127.0.0.1").CombinedOutput(); !strings.Contains(string(out), "dev lo") {
		t.Errorf("ip route get 127.0.0.1 after the crash: %s", out)
	}

	_, ctl := socketConfig(t)
	out, err := topo.client.command(shuntBin, "cleanup", "--global", "", "--user-config", "", "--config", ctl).CombinedOutput()
	if err != nil {
		t.Fatalf("shunt cleanup: %v\n%s", err, out)
	}
	for _, want := range []string{
		"removed rule -4 priority 5368 not fwmark 0x5368 lookup 21352",
		"removed route unreachable 172.31.0.0/16 table 21352",
		"removed route throw 172.31.1.1/32 table 21352",
		"normal routing is back",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("shunt cleanup said:\n%s\nwant it to contain %q", out, want)
		}
	}
	if got := routeGet(); !strings.Contains(got, "via "+gatewayAddr) {
		t.Errorf("ip route get %s after shunt cleanup: %q, want the normal route via %s", internalAddr, got, gatewayAddr)
	}
	assertClean(t, topo)
	if out, _ := topo.client.command(shuntBin, "cleanup", "--global", "", "--user-config", "", "--config", ctl).CombinedOutput(); !strings.Contains(string(out), "nothing to remove") {
		t.Errorf("a second shunt cleanup said:\n%s", out)
	}

	// A new start works, and a clean stop with the kill switch keeps the
	// destinations unreachable too, until the next start replaces it.
	sh = startShunt(t, topo, config)
	echoCheck(t, topo.client, echo, []byte("after the crash"))
	sh.stop(t)
	if got := routeGet(); !strings.Contains(got, "No route to host") {
		t.Errorf("ip route get %s after a clean stop: %q, want no route to host", internalAddr, got)
	}
	sh = startShunt(t, topo, config)
	echoCheck(t, topo.client, echo, []byte("after the stop"))
	sh.stop(t)
	topo.client.command(shuntBin, "cleanup", "--global", "", "--user-config", "", "--config", ctl).Run()
	assertClean(t, topo)
}
