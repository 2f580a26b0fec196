package platform

import (
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
	l, err := NewOwnerLookup(quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.(*ownerLookup).Close() })
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
				o, err := l.Lookup(addrPort(c.LocalAddr()), addrPort(ln.Addr()))
				if err != nil {
					t.Fatal(err)
				}
				checkOwner(t, network+" client, "+round, o, os.Getpid(), self)
			}
			o, err := l.Lookup(addrPort(s.LocalAddr()), addrPort(s.RemoteAddr()))
			if err != nil {
				t.Fatal(err)
			}
			checkOwner(t, network+" server end", o, os.Getpid(), self)
			// The user alone, from the socket, without /proc.
			before := len(l.procs)
			uid, err := l.LookupUID(addrPort(c.LocalAddr()), addrPort(ln.Addr()))
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
				o, err := l.Lookup(addrPort(c.LocalAddr()), addrPort(ln4.Addr()))
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
			o, err := l.Lookup(tuple[0], tuple[1])
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
			o, err := l.Lookup(src, dst)
			if err != nil {
				t.Error(err)
			}
			if o.PID != cmd.Process.Pid || o.Exe != bash || o.Name != filepath.Base(bash) || o.UID != uint32(os.Getuid()) {
				t.Errorf("%v -> %v: owner %+v, want bash as pid %d, %s", src, dst, o, cmd.Process.Pid, bash)
			}
			cmd.Process.Kill()
			cmd.Wait()
			// The process and its socket are gone: the cache must not answer.
			if o, err := l.Lookup(src, dst); !errors.Is(err, ErrNoSocket) {
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
	_, err := l.Lookup(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("10.1.2.3:25"))
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
	if o, err := l.Lookup(src, dst); !errors.Is(err, ErrNoSocket) {
		t.Errorf("%v -> %v found the listener: %+v, %v", src, dst, o, err)
	}
	_, err = l.Lookup(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("[fd00::1]:25"))
	if err == nil || errors.Is(err, ErrNoSocket) {
		t.Errorf("mixed families: %v", err)
	}
}

// fakeProc is a directory laid out as procfs, as far as the lookup reads it.
type fakeProc struct {
	t   *testing.T
	dir string
}

func (p fakeProc) process(pid int, start uint64, exe string, sockets ...uint32) {
	dir := filepath.Join(p.dir, fmt.Sprint(pid))
	os.RemoveAll(dir)
	must(p.t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	// The command holds spaces and parentheses, as real ones may.
	stat := fmt.Sprintf("%d (a) b (c) S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 10000 100\n", pid, pid, pid, start)
	must(p.t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	must(p.t, os.WriteFile(filepath.Join(dir, "comm"), []byte("comm-"+fmt.Sprint(pid)+"\n"), 0o644))
	if exe != "" {
		must(p.t, os.Symlink(exe, filepath.Join(dir, "exe")))
	}
	must(p.t, os.Symlink("/dev/null", filepath.Join(dir, "fd", "0")))
	for i, s := range sockets {
		must(p.t, os.Symlink(fmt.Sprintf("socket:[%d]", s), filepath.Join(dir, "fd", fmt.Sprint(i+3))))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The search and its caches, on a fake /proc: PIDs reused, processes gone,
// executables replaced.
func TestOwnerProcessCache(t *testing.T) {
	p := fakeProc{t, t.TempDir()}
	must(t, os.WriteFile(filepath.Join(p.dir, "uptime"), nil, 0o644)) // not a process
	p.process(100, 1000, "/usr/bin/mail", 555, 556)
	p.process(200, 1001, "", 777)
	p.process(300, 1002, "/opt/app/bin/app (deleted)", 888)
	l, err := newOwnerLookup(quietLog(), p.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	check := func(what string, inode uint32, pid int, exe, name string) {
		t.Helper()
		id, e, ok := l.process(uint32(os.Getuid()), inode)
		if pid == 0 {
			if ok {
				t.Errorf("%s: found %v %+v, want nothing", what, id, e)
			}
			return
		}
		if !ok || id.pid != pid || e.exe != exe || e.name != name {
			t.Errorf("%s: got %v %+v %v, want pid %d exe %q name %q", what, id, e, ok, pid, exe, name)
		}
	}
	check("first", 555, 100, "/usr/bin/mail", "mail")
	check("cached", 555, 100, "/usr/bin/mail", "mail")
	check("same process, another socket", 556, 100, "/usr/bin/mail", "mail")
	check("no exe (kernel thread)", 777, 200, "", "comm-200")
	check("replaced executable", 888, 300, "/opt/app/bin/app", "app")
	if l.recent[0] != 300 || l.recent[1] != 200 || l.recent[2] != 100 || l.recent[3] != 0 {
		t.Errorf("recent PIDs %v, want 300 200 100", l.recent)
	}
	check("unknown socket", 999, 0, "", "")

	// PID 100 exits and is reused, by another program holding the socket
	// (inherited, say).
	p.process(100, 5000, "/usr/bin/other", 555)
	check("PID reused", 555, 100, "/usr/bin/other", "other")
	if e := l.procs[100]; e.start != 5000 {
		t.Errorf("cached executable of PID 100 %+v, want the new process's", e)
	}

	// PID 200 exits.
	must(t, os.RemoveAll(filepath.Join(p.dir, "200")))
	check("process gone", 777, 0, "", "")
	if _, ok := l.procs[200]; ok || inRecent(&l.recent, 200) {
		t.Errorf("PID 200 is still remembered: %+v %v", l.procs, l.recent)
	}

	// A process of another user is searched after the socket's user's.
	if os.Geteuid() == 0 {
		p.process(400, 1003, "/usr/bin/daemon", 999)
		must(t, os.Chown(filepath.Join(p.dir, "400", "fd"), 65534, 65534))
		check("another user's process", 999, 400, "/usr/bin/daemon", "daemon")
	}

	for i := range 2 * ownerCacheInodes {
		l.remember(uint32(10000+i), procID{pid: 100, start: 5000})
	}
	if len(l.inodes) > ownerCacheInodes || l.recent[0] != 100 {
		t.Errorf("%d inodes cached, recent %v", len(l.inodes), l.recent)
	}
}

func TestParseStartTime(t *testing.T) {
	for _, c := range []struct {
		stat string
		want uint64
		ok   bool
	}{
		{"1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 27 1000 100\n", 27, true},
		{"42 (we(ir)d ) na) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456789 1 1", 123456789, true},
		{"42 (short) R 1 2 3", 0, false},
		{"garbage", 0, false},
	} {
		got, ok := parseStartTime([]byte(c.stat))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: %d %v, want %d %v", c.stat, got, ok, c.want, c.ok)
		}
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
		o, err := l.Lookup(src, dst)
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
