//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blackholed is a network behind the gateway whose packets the internal
// host drops without a word: sshd's connects to it hang, as they do to a
// firewalled port.
const blackholed = "172.31.3.0/24"

// connects opens n non-blocking connects to addr from inside the
// namespace, all from one thread (a socket belongs to the namespace it was
// made in), and returns their descriptors.
func (n *ns) connects(count int, addr netip.AddrPort) ([]int, error) {
	var fds []int
	sa := &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	err := n.do(func() error {
		for range count {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
		}
		return nil
	})
	return fds, err
}

// sortConnects polls connecting sockets once and sorts them: those whose
// connect was refused (SO_ERROR, read once, is then cleared: poll each
// socket only until it is refused), and those still pending. Any other
// outcome is an error.
func sortConnects(fds []int) (refused, pending []int, err error) {
	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	}
	if _, err := unix.Poll(pfds, 0); err != nil && !errors.Is(err, unix.EINTR) {
		return nil, nil, err
	}
	for _, p := range pfds {
		if p.Revents == 0 {
			pending = append(pending, int(p.Fd))
			continue
		}
		soErr, err := unix.GetsockoptInt(int(p.Fd), unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return nil, nil, err
		}
		switch unix.Errno(soErr) {
		case unix.ECONNREFUSED:
			refused = append(refused, int(p.Fd))
		case 0:
			return nil, nil, errors.New("a connect to the blackholed destination succeeded")
		default:
			return nil, nil, fmt.Errorf("a connect to the blackholed destination failed with %v, want refused or pending", unix.Errno(soErr))
		}
	}
	return refused, pending, nil
}

// Thousands of connects to a blackholed port behind the gateway, then a
// flow to a working destination through the same profile: it must be set
// up while the blackholed ones are still pending, and those over the
// destination's share must be refused at once. (The stack once took 4,096
// set-ups in all and dropped the SYNs beyond: the working flow waited for
// the blackholed ones to time out.)
func TestLimitBlackholedDestination(t *testing.T) {
	prerequisites(t, "prlimit") // util-linux
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	topo.gateway.exec(t, "ip", "route", "add", blackholed, "via", internalAddr)
	topo.internal.exec(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	topo.internal.exec(t, "ip", "route", "add", "blackhole", blackholed)
	sd := startSSHD(t, topo.gateway)
	// sshd holds a socket per pending connect: let it hold more than the
	// 4,096 that shunt once let through (children of this process get
	// the soft limit it started with, 1,024 on many systems).
	run(t, "prlimit", "--pid", strconv.Itoa(sd.cmd.Process.Pid), "--nofile=16384:16384")
	echoOn(t, topo.internal, "[::]:9003")
	dead := netip.MustParseAddrPort("172.31.3.1:80")
	working := net.JoinHostPort(internalAddr, "9003")

	// The blackhole is one: from the gateway, a connect hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	var timeout net.Error
	if c, err := topo.gateway.dial(ctx, dead.String()); err == nil || !errors.As(err, &timeout) || !timeout.Timeout() {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a connect from the gateway to %v: %v, want it to hang", dead, err)
	}
	cancel()

	// At info: the refusals of the flood, one debug line each, would
	// only slow the race-enabled shunt down.
	sh := startShunt(t, topo, strings.Replace(shuntConfig(topo, sd, sd.knownHosts, `  - name: internal
    destinations: [172.31.2.0/24, `+blackholed+`]
    action: tunnel
    profile: gw`), "level: debug", "level: info", 1))
	// Room on the TUN for the whole burst of SYNs: one dropped there
	// would come again only after the client's SYN retry, seconds later.
	topo.client.exec(t, "ip", "link", "set", topo.tunName(), "txqueuelen", "10000")
	echoCheck(t, topo.client, working, []byte("before the flood")) // logged in

	const flood = 6000
	// The destination's share of set-ups (router.DefaultMaxSetupsPer
	// Destination), below the profile's bound on channel opens in flight
	// (broker.DefaultMaxPendingOpens, 640): the working flow's open finds
	// room.
	const share = 512
	fds, err := topo.client.connects(flood, dead)
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	if err != nil {
		t.Fatalf("opening %d connects: %v", flood, err)
	}
	refused, pending := 0, fds
	deadline := time.Now().Add(60 * time.Second)
	for refused < flood-share && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		r, p, err := sortConnects(pending)
		if err != nil {
			t.Fatal(err)
		}
		refused, pending = refused+len(r), p
	}
	// The pending ones hang until the tunnel's dial timeout (30 s after
	// they started): all this must happen before.
	timedOut := func() string {
		if strings.Contains(sh.log.String(), "open channel to "+dead.String()+": context deadline exceeded") {
			return " (some set-ups to it had already reached the tunnel's 30 s dial timeout)"
		}
		return ""
	}
	if refused != flood-share || len(pending) != share {
		t.Fatalf("of %d connects to the blackholed %v, %d refused and %d pending; want %d pending (its share) and the rest refused at once%s",
			flood, dead, refused, len(pending), share, timedOut())
	}

	// The working flow, while the blackholed ones hang.
	if err := echo(topo.client, working, []byte("while the blackholed connects hang")); err != nil {
		t.Fatalf("a flow to %s while %d set-ups to %v hang: %v", working, share, dead, err)
	}
	_, still, err := sortConnects(pending)
	if err != nil {
		t.Fatal(err)
	}
	if len(still) != share {
		t.Errorf("%d of the %d blackholed connects pending after the working flow, want all: it must not have waited for them%s", len(still), share, timedOut())
	}
	if log := sh.log.String(); !strings.Contains(log, "refusing new flows") || !strings.Contains(log, "destination "+dead.String()) {
		t.Errorf("shunt did not warn that it refuses flows to %v:\n%s", dead, tail(log, 40))
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
