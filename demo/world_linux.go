package demo

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The world's addresses, from the documentation ranges TEST-NET-2 and
// TEST-NET-3 (RFC 5737), which no network routes: they live only inside
// the demo's namespaces, which have no route to the machine's networks,
// so they cannot collide with the machine's. (198.18.0.0/15 is shunt's
// default fake-address range for names, which a rule must not name.)
const (
	gatewayOuter = "198.51.100.1"
	clientAddr   = "198.51.100.2"
	gatewayInner = "203.0.113.1"
	internalAddr = "203.0.113.2"
	internalNet  = "203.0.113.0/24"
)

// nsPrefix starts the name of every namespace the demo makes:
// shunt-demo-ID-{c,g,i}.
const nsPrefix = "shunt-demo-"

// world is one demo's namespaces.
type world struct {
	id                        string
	client, gateway, internal netns.NsHandle
}

func nsName(id, role string) string { return nsPrefix + id + "-" + role }

// inNS runs f on a thread in the named namespace's network namespace.
func inNS(h netns.NsHandle, f func() error) error {
	return onOwnThread(func() error {
		if err := netns.Set(h); err != nil {
			return err
		}
		return f()
	})
}

// newNamed makes a named namespace as ip netns add does (bind-mounted at
// /run/netns/NAME), without moving the caller into it.
func newNamed(name string) (netns.NsHandle, error) {
	var h netns.NsHandle
	err := onOwnThread(func() (err error) {
		h, err = netns.NewNamed(name)
		return err
	})
	return h, err
}

// onOwnThread runs f on an OS thread of its own, which f may move into
// another network namespace: the thread is moved back afterwards, or, if
// it cannot be, dies with its goroutine instead of serving other code.
func onOwnThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		errc <- f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
}

func buildWorld(id string) (w *world, err error) {
	w = &world{id: id}
	defer func() {
		if err != nil {
			removeWorld(id)
		}
	}()
	for _, r := range []struct {
		role string
		h    *netns.NsHandle
	}{{"c", &w.client}, {"g", &w.gateway}, {"i", &w.internal}} {
		if *r.h, err = newNamed(nsName(id, r.role)); err != nil {
			return nil, fmt.Errorf("making namespace %s: %w", nsName(id, r.role), err)
		}
		// A resolv.conf of its own for ip netns exec: no look-up leaves.
		etc := filepath.Join("/etc/netns", nsName(id, r.role))
		if os.MkdirAll(etc, 0o755) == nil {
			os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte("# shunt demo\nnameserver 192.0.2.53\noptions timeout:1 attempts:1\n"), 0o644)
		}
	}
	if err := veth(w.client, w.gateway, "shd"+id+"c", "shd"+id+"g", clientAddr, gatewayOuter); err != nil {
		return nil, err
	}
	if err := veth(w.gateway, w.internal, "shd"+id+"h", "shd"+id+"i", gatewayInner, internalAddr); err != nil {
		return nil, err
	}
	for _, h := range []netns.NsHandle{w.client, w.gateway, w.internal} {
		if err := linkUp(h, "lo"); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// veth joins namespaces a and b with a veth pair, addressed /24.
func veth(a, b netns.NsHandle, an, bn, aAddr, bAddr string) error {
	v := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: an, Namespace: netlink.NsFd(a)},
		PeerName:      bn,
		PeerNamespace: netlink.NsFd(b),
	}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("making veth %s: %w", an, err)
	}
	for _, e := range []struct {
		h          netns.NsHandle
		name, addr string
	}{{a, an, aAddr}, {b, bn, bAddr}} {
		nh, err := netlink.NewHandleAt(e.h)
		if err != nil {
			return err
		}
		l, err := nh.LinkByName(e.name)
		if err == nil {
			var addr *netlink.Addr
			addr, err = netlink.ParseAddr(e.addr + "/24")
			if err == nil {
				err = nh.AddrAdd(l, addr)
			}
			if err == nil {
				err = nh.LinkSetUp(l)
			}
		}
		nh.Close()
		if err != nil {
			return fmt.Errorf("setting up %s: %w", e.name, err)
		}
	}
	return nil
}

func linkUp(h netns.NsHandle, name string) error {
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nh.Close()
	l, err := nh.LinkByName(name)
	if err != nil {
		return err
	}
	return nh.LinkSetUp(l)
}

// start starts cmd in namespace h, in a process group of its own (a
// Ctrl-C at the terminal reaches the demo, which stops it in order).
func start(h netns.NsHandle, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: 0}
	return inNS(h, cmd.Start)
}

// dial connects to addr from namespace h.
func dial(ctx context.Context, h netns.NsHandle, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNS(h, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// worlds lists the ids of the demo worlds on this machine.
func worlds() []string {
	ents, _ := os.ReadDir("/run/netns")
	var ids []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, nsPrefix) && strings.HasSuffix(n, "-c") {
			ids = append(ids, strings.TrimSuffix(strings.TrimPrefix(n, nsPrefix), "-c"))
		}
	}
	return ids
}

// removeWorld kills every process in the world's namespaces, deletes them
// (their veths go with them) and its files. It removes what it finds, so
// it also clears a half-built or crashed world.
func removeWorld(id string) error {
	var inodes []uint64
	for _, r := range []string{"c", "g", "i"} {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", nsName(id, r)), &st) == nil {
			inodes = append(inodes, st.Ino)
		}
	}
	killIn(inodes)
	var firstErr error
	for _, r := range []string{"c", "g", "i"} {
		name := nsName(id, r)
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
			if err := netns.DeleteNamed(name); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("removing namespace %s: %w", name, err)
			}
		}
		os.RemoveAll(filepath.Join("/etc/netns", name))
	}
	os.RemoveAll(worldDir(id))
	return firstErr
}

// killIn stops the processes whose network namespace is one of inodes:
// SIGTERM, then SIGKILL to those left after a few seconds.
func killIn(inodes []uint64) {
	if len(inodes) == 0 {
		return
	}
	find := func() []int {
		ents, _ := os.ReadDir("/proc")
		var pids []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			var st syscall.Stat_t
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil {
				continue
			}
			for _, ino := range inodes {
				if st.Ino == ino {
					pids = append(pids, pid)
				}
			}
		}
		return pids
	}
	for _, p := range find() {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left := find()
		alive := 0
		for _, p := range left {
			if !zombie(p) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range find() {
		syscall.Kill(p, syscall.SIGKILL)
	}
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}
