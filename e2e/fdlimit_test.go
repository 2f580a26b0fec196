//go:build linux

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fdLimit is the descriptor limit the test gives shunt (soft and hard):
// room for what it holds at start and a few tens of direct flows.
const fdLimit = 64

// shunt under a descriptor limit of 64: it says so at start; direct flows
// (a descriptor each) are taken until the limit, and the ones beyond are
// refused (RST), with the out-of-descriptors warning, while shunt stays
// up; tunnelled flows, which take no descriptor, keep working, 200 of them
// at once, past the limit; and once the direct flows close, new ones are
// taken again.
func TestDescriptorLimit(t *testing.T) {
	prerequisites(t, "prlimit") // util-linux
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	echoOn(t, topo.internal, fmt.Sprintf("[::]:%d", portEcho))
	// A service on the gateway itself, for the direct rule.
	direct := net.JoinHostPort(gatewayAddr, "7000")
	echoOn(t, topo.gateway, direct)
	tunnelled := net.JoinHostPort(internalAddr, fmt.Sprint(portEcho))
	rules := `  - name: gateway-service
    destinations: [172.31.1.1]
    ports: [7000]
    action: direct
  - name: internal
    destinations: [172.31.0.0/16]
    action: tunnel
    profile: gw`
	// prlimit sets the limit and execs shunt: the same process.
	sh := startShuntWith(t, topo, strings.Replace(shuntConfig(topo, sd, sd.knownHosts, rules), "level: debug", "level: info", 1),
		shuntOptions{wrap: []string{"prlimit", fmt.Sprintf("--nofile=%d:%d", fdLimit, fdLimit)}})
	var room int
	for _, line := range strings.Split(sh.log.String(), "\n") {
		if _, after, ok := strings.Cut(line, "room for about "); ok && strings.Contains(line, fmt.Sprintf("descriptor limit %d:", fdLimit)) {
			fmt.Sscanf(after, "%d", &room)
		}
	}
	if room == 0 {
		t.Errorf("shunt did not log the limit of %d descriptors and the room it leaves at start:\n%s", fdLimit, sh.log)
	}
	echoCheck(t, topo.client, tunnelled, []byte("logged in")) // the SSH connection's descriptor is taken
	pid := sh.cmd.Process.Pid
	base, err := procFDs(pid)
	if err != nil {
		t.Fatal(err)
	}

	// Direct flows, held open, until shunt refuses one.
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	refused := 0
	for len(held) <= fdLimit && refused == 0 {
		c, err := holdFlow(topo.client, direct)
		switch {
		case err == nil:
			held = append(held, c)
		case errors.Is(err, syscall.ECONNREFUSED):
			refused++
		default:
			t.Fatalf("direct flow %d: %v, want it taken or refused", len(held)+1, err)
		}
	}
	if refused == 0 {
		t.Fatalf("%d direct flows taken under a limit of %d descriptors: none refused", len(held), fdLimit)
	}
	t.Logf("%d descriptors at shunt's start of flows, limit %d: %d direct flows taken, then refused (shunt said room for about %d)", base, fdLimit, len(held), room)
	if len(held) < fdLimit-base-8 {
		t.Errorf("only %d direct flows taken with %d of %d descriptors in use before: a flow must cost one", len(held), base, fdLimit)
	}
	// At the limit: more are refused, and at once (a RST, not a hang).
	for i := range 5 {
		start := time.Now()
		c, err := holdFlow(topo.client, direct)
		if err == nil {
			c.Close()
			t.Fatalf("at the limit, direct flow %d more was taken", i+1)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("at the limit, a direct flow: %v, want connection refused", err)
		}
		t.Logf("refused in %v", time.Since(start).Round(time.Millisecond))
	}
	waitFor(t, "the out-of-descriptors warning", func() bool {
		return strings.Contains(sh.log.String(), "out of file descriptors")
	})

	// Tunnelled flows take no descriptor: 200 at once, past the limit.
	const tunnelledFlows = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	var conns []net.Conn
	for i := range tunnelledFlows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := holdFlow(topo.client, tunnelled)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("tunnelled flow %d: %w", i, err))
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	for _, err := range errs[:min(len(errs), 5)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Errorf("%d of %d tunnelled flows failed at the descriptor limit", len(errs), tunnelledFlows)
	}
	for _, c := range conns {
		c.Close()
	}
	select {
	case err := <-sh.done:
		t.Fatalf("shunt exited at the descriptor limit: %v", err)
	default:
	}

	// The direct flows close: new ones are taken again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitFor(t, "a direct flow once the others closed", func() bool {
		c, err := holdFlow(topo.client, direct)
		if err == nil {
			held = append(held, c)
		}
		return err == nil
	})
	echoCheck(t, topo.client, tunnelled, []byte("after the limit"))
}

// holdFlow connects to an echo server at addr and checks that a byte
// comes back; the connection stays open.
func holdFlow(client *ns, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	got := make([]byte, 1)
	if _, err := c.Write([]byte("x")); err == nil {
		_, err = io.ReadFull(c, got)
	}
	if err != nil || !bytes.Equal(got, []byte("x")) {
		c.Close()
		return nil, fmt.Errorf("connected, then the echo failed: %v (got %q)", err, got)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
