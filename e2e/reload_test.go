//go:build linux

package e2e

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// reloadConfig is a configuration whose profile moving carries
// 172.31.2.0/24 through server (an address of the gateway's), and whose
// second profile, named second, carries second's destinations through
// secondServer.
func reloadConfig(topo *topology, key, knownHosts, server, second, secondServer, secondDst string) string {
	profile := func(name, host string) string {
		return fmt.Sprintf("  - name: %s\n    host: %q\n    user: root\n    identity_files: [%s]\n    known_hosts: %s\n", name, host, key, knownHosts)
	}
	return fmt.Sprintf(`profiles:
%s%srules:
  - name: kept
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: moving
  - name: %s-rule
    destinations: [%q]
    action: tunnel
    profile: %s
tun:
  name: %s
log:
  level: debug
`, profile("moving", server), profile(second, secondServer), second, secondDst, second, topo.tunName())
}

// A reload (SIGHUP) while a 64 MiB transfer runs: a destination kept in
// the configuration is routed at every poll of the routing table, over
// several reloads; a removed destination stops being routed; a new
// profile's rule works for a new flow; and the transfer, through a profile
// whose server changed, completes with the right sha256 on its old SSH
// connection, which then closes. (shunt up had no SIGHUP, and Reload
// refused any change of profiles.)
func TestReloadEndToEnd(t *testing.T) {
	prerequisites(t, "socat")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	topo.client.exec(t, "ip", "-6", "route", "add", "default", "via", gateway6)
	// Two servers on the gateway: one on its IPv4 address, one on its
	// IPv6 address, both with the first one's client key.
	sd1 := startSSHDWith(t, topo.gateway, sshdOptions{listen: []string{gatewayAddr}})
	sd2 := startSSHDWith(t, topo.gateway, sshdOptions{listen: []string{gateway6}})
	sd2.authorize(t, sd1.clientKey+".pub")
	kh1, _ := os.ReadFile(sd1.knownHosts)
	kh2, _ := os.ReadFile(sd2.knownHosts)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(knownHosts, append(kh1, kh2...), 0o600)

	// The transfer: 64 MiB from the internal host, held at half way until
	// the reloads are done, so that they happen while it runs.
	const size = 64 << 20
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{5}).Read(data)
	want := sha256.Sum256(data)
	halfway, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	const portHeld = 9005
	topo.internal.serve(t, fmt.Sprintf("%s:%d", internalAddr, portHeld), func(c net.Conn) {
		if _, err := c.Write(data[:size/2]); err != nil {
			return
		}
		once.Do(func() { close(halfway) })
		<-release
		c.Write(data[size/2:])
	})
	echoOn(t, topo.internal, net.JoinHostPort(internal6, fmt.Sprint(portEcho)))
	echoOn(t, topo.internal, net.JoinHostPort(internalAddr, fmt.Sprint(portEcho)))

	// Before: moving through sd1, and old carrying 10.99.0.0/24 (routed,
	// not reached). After: moving through sd2, old gone, and new, through
	// sd2, carrying the internal host's IPv6 network.
	before := reloadConfig(topo, sd1.clientKey, knownHosts, gatewayAddr, "old", gatewayAddr, "10.99.0.0/24")
	after := reloadConfig(topo, sd1.clientKey, knownHosts, gateway6, "new", gateway6, "fd31:2::/64")
	sh := startShunt(t, topo, before)
	path := sh.cmd.Args[len(sh.cmd.Args)-1]

	routes := func() string {
		out, err := topo.client.command("ip", "route", "show", "table", "21352").CombinedOutput()
		if err != nil {
			t.Errorf("ip route show table 21352: %v: %s", err, out)
		}
		return string(out)
	}
	if r := routes(); !strings.Contains(r, "172.31.2.0/24 dev") || !strings.Contains(r, "10.99.0.0/24 dev") {
		t.Fatalf("routes before the reloads:\n%s", r)
	}

	file := filepath.Join(t.TempDir(), "held.bin")
	transfer := topo.client.command("socat", "-u", fmt.Sprintf("TCP:%s:%d", internalAddr, portHeld), "CREATE:"+file)
	transferOut := &syncBuffer{}
	transfer.Stdout, transfer.Stderr = transferOut, transferOut
	if err := transfer.Start(); err != nil {
		t.Fatal(err)
	}
	var transferErr error
	transferDone := make(chan struct{})
	go func() { transferErr = transfer.Wait(); close(transferDone) }()
	t.Cleanup(func() {
		once.Do(func() { close(halfway) })
		select {
		case <-release:
		default:
			close(release)
		}
		transfer.Process.Kill()
		<-transferDone
	})
	select {
	case <-halfway:
	case <-transferDone:
		t.Fatalf("the transfer ended before half way: %v: %s", transferErr, transferOut)
	case <-time.After(60 * time.Second):
		t.Fatal("the transfer did not get half way in 60 s")
	}
	logins1 := sd1.logins()

	// Watch the routing table's changes while the reloads run: a
	// deletion of the kept destination, however short, is an event.
	updates := make(chan netlink.RouteUpdate, 1024)
	stopWatch := make(chan struct{})
	if err := netlink.RouteSubscribeAt(topo.client.h, updates, stopWatch); err != nil {
		t.Fatal(err)
	}
	var stopOnce sync.Once
	stopWatching := func() { stopOnce.Do(func() { close(stopWatch) }) }
	t.Cleanup(stopWatching)
	var events []netlink.RouteUpdate
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for u := range updates {
			events = append(events, u)
		}
	}()
	// And poll the routing table as fast as ip can.
	var polls, missing atomic.Int32
	var firstMiss atomic.Value
	stopPoll := make(chan struct{})
	pollDone := make(chan struct{})
	var pollOnce sync.Once
	stopPolling := func() { pollOnce.Do(func() { close(stopPoll) }); <-pollDone }
	t.Cleanup(stopPolling) // before the namespace goes
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-stopPoll:
				return
			default:
			}
			r := routes()
			polls.Add(1)
			if !strings.Contains(r, "172.31.2.0/24 dev") {
				missing.Add(1)
				firstMiss.CompareAndSwap(nil, r)
			}
		}
	}()
	// Several reloads, changing the profiles each time: after, before,
	// after. Each waits for shunt to say it is done.
	for i, cfg := range []string{after, before, after, before, after} {
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		sh.cmd.Process.Signal(syscall.SIGHUP)
		waitFor(t, fmt.Sprintf("reload %d", i+1), func() bool {
			return strings.Count(sh.log.String(), "configuration reloaded") == i+1
		})
	}
	stopPolling()
	stopWatching()
	<-watchDone
	kept := netip.MustParsePrefix("172.31.2.0/24")
	changes := 0
	for _, u := range events {
		if u.Table != 21352 || u.Dst == nil {
			continue
		}
		changes++
		ones, _ := u.Dst.Mask.Size()
		dst, _ := netip.AddrFromSlice(u.Dst.IP)
		if u.Type == unix.RTM_DELROUTE && netip.PrefixFrom(dst.Unmap(), ones) == kept {
			t.Errorf("a reload deleted the route to %v, which every configuration keeps", kept)
		}
	}
	if changes == 0 {
		t.Error("the reloads changed no route: the test watched nothing")
	}
	t.Logf("%d polls of the routing table during 5 reloads", polls.Load())
	if n := missing.Load(); n > 0 {
		t.Errorf("172.31.2.0/24, kept by every configuration, was missing at %d of %d polls, first:\n%s", n, polls.Load(), firstMiss.Load())
	}
	if polls.Load() < 3 {
		t.Errorf("only %d polls: the test did not watch the reloads", polls.Load())
	}
	if strings.Contains(sh.log.String(), "the configuration was refused") {
		t.Fatalf("a reload was refused:\n%s", sh.log)
	}

	// The removed destination is no longer routed; the new one is.
	if r, r6 := routes(), routes6(topo); strings.Contains(r, "10.99.0.0/24") || !strings.Contains(r, "172.31.2.0/24 dev") || !strings.Contains(r6, "fd31:2::/64 dev") {
		t.Errorf("routes after the reloads (10.99.0.0/24 must be gone, 172.31.2.0/24 and fd31:2::/64 there):\n%s%s", r, r6)
	}
	// New flows follow the new profiles: new's rule, and moving's new
	// server.
	logins2 := sd2.logins()
	echoCheck(t, topo.client, net.JoinHostPort(internal6, fmt.Sprint(portEcho)), []byte("through the new profile"))
	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, fmt.Sprint(portEcho)), []byte("through moving's new server"))
	if sd2.logins() <= logins2 {
		t.Errorf("the second server saw no login for the new flows:\n%s", sd2.log)
	}
	if sd1.logins() != logins1 {
		t.Errorf("the first server saw %d more logins: new flows must not go there", sd1.logins()-logins1)
	}

	// The running transfer completes, on its old connection.
	close(release)
	select {
	case <-transferDone:
		if transferErr != nil {
			t.Fatalf("the transfer failed: %v: %s", transferErr, transferOut)
		}
	case <-time.After(120 * time.Second):
		t.Fatal("the transfer did not complete within 120 s of its release")
	}
	if got := sha256File(t, file); got != want {
		t.Fatalf("received sha256 %x, sent %x", got, want)
	}
	// Its SSH connection, retired by the first reload, closes with it.
	waitFor(t, "the retired connection to close", func() bool {
		return strings.Contains(sh.log.String(), "the retired profile's last connection has closed")
	})
	sh.stop(t)
	assertClean(t, topo)
}

// routes6 lists the IPv6 routes of shunt's table.
func routes6(topo *topology) string {
	out, _ := topo.client.command("ip", "-6", "route", "show", "table", "21352").CombinedOutput()
	return string(out)
}
