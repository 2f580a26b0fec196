package platform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/internal/testns"
)

func newTestOwnerLookup(t testing.TB) *ownerLookup {
	t.Helper()
	l, err := NewOwners(quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*ownerLookup)
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

func realPath(t testing.TB, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkOwner(t *testing.T, what string, o Owner, pid int, exe string) {
	t.Helper()
	if o.UID != uint32(os.Getuid()) || o.PID != pid || o.Exe != exe || o.Name != filepath.Base(exe) {
		t.Errorf("%s: owner %+v, want uid %d pid %d exe %s", what, o, os.Getuid(), pid, exe)
	}
}

// Connections on loopback belong to this process, from either end, and
// whether the flow is given with plain or IPv4-mapped addresses.
func TestOwnerLookupLoopback(t *testing.T) {
	inNewNetns(t, func() {
		l := newTestOwnerLookup(t)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		self = realPath(t, self)
		for _, network := range []string{"127.0.0.1", "[::1]"} {
			ln, err := net.Listen("tcp", network+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, round := range []string{"first", "cached"} {
				o, err := l.Lookup(t.Context(), addrPort(c.LocalAddr()), addrPort(ln.Addr()))
				if err != nil {
					t.Fatal(err)
				}
				checkOwner(t, network+" client, "+round, o, os.Getpid(), self)
			}
			o, err := l.Lookup(t.Context(), addrPort(s.LocalAddr()), addrPort(s.RemoteAddr()))
			if err != nil {
				t.Fatal(err)
			}
			checkOwner(t, network+" server end", o, os.Getpid(), self)
			// The user alone, from the socket, without /proc.
			before := len(l.procs)
			uid, err := l.LookupUID(t.Context(), addrPort(c.LocalAddr()), addrPort(ln.Addr()))
			if err != nil || uid != uint32(os.Geteuid()) {
				t.Errorf("LookupUID = %d, %v; want %d", uid, err, os.Geteuid())
			}
			if len(l.procs) != before {
				t.Error("LookupUID looked at processes")
			}
		}

		// Many flows at once, none cached.
		clear(l.inodes)
		clear(l.procs)
		l.recent = [ownerRecent]int{}
		ln4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln4.Close()
		var wg sync.WaitGroup
		for range 16 {
			c, err := net.Dial("tcp", ln4.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			wg.Go(func() {
				o, err := l.Lookup(t.Context(), addrPort(c.LocalAddr()), addrPort(ln4.Addr()))
				if err != nil {
					t.Error(err)
				}
				checkOwner(t, "concurrent", o, os.Getpid(), self)
			})
		}
		wg.Wait()

		// An IPv6 socket connected to an IPv4 address: the kernel reports
		// it with mapped addresses.
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		dst := addrPort(ln.Addr())
		if err := unix.Connect(fd, &unix.SockaddrInet6{Port: int(dst.Port()), Addr: netip.AddrFrom4(dst.Addr().As4()).As16()}); err != nil {
			t.Fatal(err)
		}
		sa, _ := unix.Getsockname(fd)
		src := netip.AddrPortFrom(netip.AddrFrom16(sa.(*unix.SockaddrInet6).Addr), uint16(sa.(*unix.SockaddrInet6).Port))
		for _, tuple := range [][2]netip.AddrPort{
			{netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), dst},
			{src, netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())},
		} {
			o, err := l.Lookup(t.Context(), tuple[0], tuple[1])
			if err != nil {
				t.Fatal(err)
			}
			checkOwner(t, fmt.Sprintf("dual-stack socket as %v -> %v", tuple[0], tuple[1]), o, os.Getpid(), self)
		}
	})
}

// A connection that never gets an answer, like every flow shunt captures
// when it looks it up: the socket is in SYN-SENT, in another process.
func TestOwnerLookupSynSent(t *testing.T) {
	inNewNetns(t, func() {
		bash, err := exec.LookPath("bash")
		lack := ""
		if err != nil {
			lack = "needs bash: " + err.Error()
		}
		testns.Need(t, lack)
		bash = realPath(t, bash)
		// The SYNs go to a TUN device that nobody reads, from the TUN's
		// addresses, as captured flows do.
		tunFile := openTestTUN(t, "showner0")
		defer tunFile.Close()
		dev, err := netlink.LinkByName("showner0")
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(dev); err != nil {
			t.Fatal(err)
		}
		l := newTestOwnerLookup(t)
		for _, c := range []struct{ local, dst, route string }{
			{"198.18.0.1/32", "10.9.9.9:25", "10.9.9.0/24"},
			{"fd53:6875:6e74::1/128", "[fd00:9::9]:993", "fd00:9::/64"},
		} {
			local := netip.MustParsePrefix(c.local)
			dst := netip.MustParseAddrPort(c.dst)
			addr := &netlink.Addr{IPNet: ipNet(local), Flags: unix.IFA_F_NODAD}
			if err := netlink.AddrAdd(dev, addr); err != nil {
				if local.Addr().Is6() {
					t.Logf("no IPv6 here, IPv6 case skipped: %v", err)
					continue
				}
				t.Fatal(err)
			}
			route := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: ipNet(netip.MustParsePrefix(c.route)), Src: local.Addr().AsSlice()}
			if err := netlink.RouteAdd(route); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(bash, "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", dst.Addr(), dst.Port()))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			src, ok := waitSynSent(dst, cmd)
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("no SYN-SENT socket to %v appeared (bash: %q)", dst, stderr.String())
			}
			if src.Addr() != local.Addr() {
				t.Errorf("the connection came from %v, want %v (the test is wrong)", src, local.Addr())
			}
			o, err := l.Lookup(t.Context(), src, dst)
			if err != nil {
				t.Error(err)
			}
			if o.PID != cmd.Process.Pid || o.Exe != bash || o.Name != filepath.Base(bash) || o.UID != uint32(os.Getuid()) {
				t.Errorf("%v -> %v: owner %+v, want bash as pid %d, %s", src, dst, o, cmd.Process.Pid, bash)
			}
			cmd.Process.Kill()
			cmd.Wait()
			// The process and its socket are gone: the cache must not answer.
			if o, err := l.Lookup(t.Context(), src, dst); !errors.Is(err, ErrNoSocket) {
				t.Errorf("after the process exited: %+v, %v", o, err)
			}
		}
	})
}

// openTestTUN creates TUN device name, which lives while the file is open.
func openTestTUN(t *testing.T, name string) *os.File {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		t.Fatalf("TUN %s: %v", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun")
}

// waitSynSent returns the local end of cmd's connection to dst, once it is
// in SYN-SENT.
func waitSynSent(dst netip.AddrPort, cmd *exec.Cmd) (netip.AddrPort, bool) {
	fam := uint8(netlink.FAMILY_V4)
	if dst.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		socks, _ := netlink.SocketDiagTCP(fam)
		for _, s := range socks {
			d, _ := netip.AddrFromSlice(s.ID.Destination)
			if s.State == netlink.TCP_SYN_SENT && d.Unmap() == dst.Addr() && s.ID.DestinationPort == dst.Port() {
				a, _ := netip.AddrFromSlice(s.ID.Source)
				return netip.AddrPortFrom(a.Unmap(), s.ID.SourcePort), true
			}
		}
		if cmd.ProcessState != nil {
			break
		}
	}
	return netip.AddrPort{}, false
}

// No socket has the flow's addresses, though a listener has its port.
func TestOwnerLookupNoSocket(t *testing.T) {
	l := newTestOwnerLookup(t)
	_, err := l.Lookup(t.Context(), netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("10.1.2.3:25"))
	if !errors.Is(err, ErrNoSocket) || err.Error() != "no local socket for 198.18.0.1:40000 -> 10.1.2.3:25" {
		t.Errorf("got %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := addrPort(ln.Addr())
	dst := netip.MustParseAddrPort("10.1.2.3:25")
	if o, err := l.Lookup(t.Context(), src, dst); !errors.Is(err, ErrNoSocket) {
		t.Errorf("%v -> %v found the listener: %+v, %v", src, dst, o, err)
	}
	_, err = l.Lookup(t.Context(), netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("[fd00::1]:25"))
	if err == nil || errors.Is(err, ErrNoSocket) {
		t.Errorf("mixed families: %v", err)
	}
	// A flow given up is not looked up.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Lookup(ctx, src, dst); !errors.Is(err, context.Canceled) {
		t.Errorf("Lookup of a cancelled flow: %v", err)
	}
	if _, err := l.LookupUID(ctx, src, dst); !errors.Is(err, context.Canceled) {
		t.Errorf("LookupUID of a cancelled flow: %v", err)
	}
}

// BenchmarkOwnerLookup measures a lookup of a connected loopback socket:
// hot (socket and process cached), recent (a new socket of a process
// seen recently) and cold (caches empty: all of /proc is searched).
func BenchmarkOwnerLookup(b *testing.B) {
	l := newTestOwnerLookup(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	src, dst := addrPort(c.LocalAddr()), addrPort(ln.Addr())
	lookup := func(b *testing.B) {
		o, err := l.Lookup(b.Context(), src, dst)
		if err != nil || o.PID != os.Getpid() {
			b.Fatalf("%+v %v", o, err)
		}
	}
	b.Run("hot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			lookup(b)
		}
	})
	b.Run("recent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(l.inodes)
			lookup(b)
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(l.inodes)
			clear(l.procs)
			l.recent = [ownerRecent]int{}
			lookup(b)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*")
		b.ReportMetric(float64(len(procs)), "processes")
	})
}

// FuzzParseDiagMsg reads arbitrary inet_diag answers: too short is an
// error, and a socket is returned only for the addresses asked for.
func FuzzParseDiagMsg(f *testing.F) {
	src := netip.MustParseAddrPort("10.0.0.2:40000")
	dst := netip.MustParseAddrPort("10.1.0.7:993")
	m := make([]byte, sizeofInetDiagMsg)
	m[0] = 2 // AF_INET
	binary.BigEndian.PutUint16(m[4:], src.Port())
	binary.BigEndian.PutUint16(m[6:], dst.Port())
	copy(m[8:], src.Addr().AsSlice())
	copy(m[24:], dst.Addr().AsSlice())
	f.Add(m)
	f.Add(m[:10])
	f.Fuzz(func(t *testing.T, m []byte) {
		if _, err := parseDiagMsg(m, src, dst); err == nil && len(m) < sizeofInetDiagMsg {
			t.Fatalf("accepted a message of %d bytes", len(m))
		}
	})
}
