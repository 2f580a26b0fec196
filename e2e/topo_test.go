//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/shunt-dev/shunt/internal/testns"
)

// requiredEnv, when "1", turns every missing prerequisite into a failure.
// .ci/run sets it, so CI can never pass by skipping.
const requiredEnv = testns.RequiredEnv

// prerequisites skips (or, under requiredEnv, fails) when the machine
// cannot run the end-to-end tests, naming what is missing.
func prerequisites(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if runtime.GOOS != "linux" {
		missing = append(missing, "Linux")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces, TUN, routes)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	for _, tool := range append([]string{"ip", "/usr/sbin/sshd", "ssh-keygen"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	lack := ""
	if len(missing) > 0 {
		lack = "end-to-end test needs " + strings.Join(missing, ", ") +
			" (on Debian: apt-get install openssh-server iproute2 curl socat dante-server tinyproxy dnsmasq-base dovecot-imapd, and run as root)"
	}
	// Skips, or fails under requiredEnv; TestMain lists the skips.
	testns.Need(t, lack)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ns is a network namespace made by a test.
type ns struct {
	name string
	h    netns.NsHandle
}

func (n *ns) exec(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

func (n *ns) command(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// do runs f on an OS thread inside the namespace: sockets f creates belong
// to it for good, wherever they are used afterwards.
func (n *ns) do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked and dies with the goroutine, so a
		// thread whose namespace could not be restored is never reused.
		runtime.LockOSThread()
		if err := netns.Set(n.h); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// dial connects from inside the namespace.
func (n *ns) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// serve runs h for every connection to addr inside the namespace, each in
// its own goroutine, and closes the connection after h, until the test
// ends.
func (n *ns) serve(t *testing.T, addr string, h func(net.Conn)) {
	t.Helper()
	ln := n.listen(t, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); h(c) }()
		}
	}()
}

// listen listens inside the namespace.
func (n *ns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// topology is three hosts: client ⇄ gateway ⇄ internal. The gateway does
// not forward packets, so the client reaches the internal host only through
// the gateway's sshd.
type topology struct {
	id                        string
	client, gateway, internal *ns
}

const (
	clientAddr   = "172.31.1.2"
	gatewayAddr  = "172.31.1.1"
	gatewayInner = "172.31.2.1"
	internalAddr = "172.31.2.2"
	client6      = "fd31:1::2"
	gateway6     = "fd31:1::1"
	gatewayInn6  = "fd31:2::1"
	internal6    = "fd31:2::2"
)

func newTopology(t *testing.T) *topology {
	t.Helper()
	idb := make([]byte, 3)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	topo := &topology{id: id}
	mk := func(role string) *ns {
		name := fmt.Sprintf("shunt-%s-%s", id, role)
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		h, err := netns.GetFromName(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		n := &ns{name: name, h: h}
		n.exec(t, "ip", "link", "set", "lo", "up")
		// ip netns exec binds /etc/netns/NAME/resolv.conf over
		// /etc/resolv.conf: the namespace's resolver settings are its
		// own, and a shunt inside that changes them never touches the
		// machine's.
		etc := "/etc/netns/" + name
		if err := os.MkdirAll(etc, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(etc) })
		if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(nsResolvConf), 0o644); err != nil {
			t.Fatal(err)
		}
		return n
	}
	topo.client, topo.gateway, topo.internal = mk("c"), mk("g"), mk("i")
	// Veth names are unique per test (interfaces live in the root
	// namespace for a moment after creation).
	link := func(a, b *ns, an, bn, aAddr, bAddr, a6, b6 string) {
		va, vb := "sh"+id+an, "sh"+id+bn
		run(t, "ip", "link", "add", va, "netns", a.name, "type", "veth", "peer", "name", vb, "netns", b.name)
		a.exec(t, "ip", "addr", "add", aAddr+"/24", "dev", va)
		b.exec(t, "ip", "addr", "add", bAddr+"/24", "dev", vb)
		a.exec(t, "ip", "addr", "add", a6+"/64", "dev", va, "nodad")
		b.exec(t, "ip", "addr", "add", b6+"/64", "dev", vb, "nodad")
		a.exec(t, "ip", "link", "set", va, "up")
		b.exec(t, "ip", "link", "set", vb, "up")
	}
	link(topo.client, topo.gateway, "c", "g", clientAddr, gatewayAddr, client6, gateway6)
	link(topo.gateway, topo.internal, "h", "i", gatewayInner, internalAddr, gatewayInn6, internal6)
	return topo
}

// nsResolvConf is each namespace's resolv.conf until a test writes its own:
// a name server nothing answers at (TEST-NET-1), so no look-up leaves the
// namespace.
const nsResolvConf = "# shunt e2e test namespace\nnameserver 192.0.2.53\noptions timeout:1 attempts:1\n"

// sshd is Debian's OpenSSH server on the gateway, key authentication only.
type sshd struct {
	owner       *testing.T // restarts are cleaned up with the test that made it
	dir         string
	listen      string
	hostKey     string
	clientKey   string // private key file
	knownHosts  string // a known_hosts with the gateway's key
	fingerprint string
	cmd         *exec.Cmd
	log         *syncBuffer
	cfg         string
	ns          *ns
}

func startSSHD(t *testing.T, gw *ns) *sshd {
	return startSSHDWith(t, gw, sshdOptions{listen: []string{gatewayAddr, gateway6}})
}

// sshdOptions shape a test sshd.
type sshdOptions struct {
	listen []string // ListenAddress lines; the first is the one dialled
	extra  []string // more sshd_config lines
	// hostCA, when set, signs the host key; the certificate is served.
	hostCA string
}

func startSSHDWith(t *testing.T, host *ns, o sshdOptions) *sshd {
	t.Helper()
	dir := t.TempDir()
	s := &sshd{dir: dir, ns: host, log: &syncBuffer{}, listen: o.listen[0], owner: t}
	s.hostKey = filepath.Join(dir, "ssh_host_ed25519_key")
	s.clientKey = filepath.Join(dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.hostKey)
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", s.clientKey)
	s.authorize(t, s.clientKey+".pub")
	hostPub, _ := os.ReadFile(s.hostKey + ".pub")
	s.knownHosts = filepath.Join(dir, "known_hosts")
	os.WriteFile(s.knownHosts, []byte(strings.Join(o.listen, ",")+" "+string(hostPub)), 0o600)
	fp := run(t, "ssh-keygen", "-l", "-f", s.hostKey+".pub")
	s.fingerprint = strings.Fields(fp)[1]
	lines := []string{}
	for _, l := range o.listen {
		lines = append(lines, "ListenAddress "+l)
	}
	if o.hostCA != "" {
		run(t, "ssh-keygen", "-q", "-s", o.hostCA, "-I", "gateway", "-h", "-n", strings.Join(o.listen, ","), s.hostKey+".pub")
		lines = append(lines, "HostCertificate "+s.hostKey+"-cert.pub")
	}
	lines = append(lines,
		"HostKey "+s.hostKey,
		"PidFile none",
		"AuthorizedKeysFile "+filepath.Join(dir, "authorized_keys"),
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"StrictModes no",
		"UsePAM no",
		"AllowTcpForwarding yes",
		"LogLevel VERBOSE",
	)
	// Later lines cannot override earlier ones in sshd_config: extra
	// settings go first.
	lines = append(o.extra, lines...)
	s.cfg = filepath.Join(dir, "sshd_config")
	os.WriteFile(s.cfg, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	s.start(t)
	return s
}

// authorize adds a public key file to the server's authorized_keys.
func (s *sshd) authorize(t *testing.T, pubFile string) {
	t.Helper()
	pub, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(s.dir, "authorized_keys"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(pub)
	f.Close()
}

// logins counts successful logins so far.
func (s *sshd) logins() int {
	l := s.log.String()
	return strings.Count(l, "Accepted publickey for") + strings.Count(l, "Accepted password for") +
		strings.Count(l, "Accepted keyboard-interactive")
}

func (s *sshd) start(t *testing.T) {
	t.Helper()
	s.cmd = s.ns.command("/usr/sbin/sshd", "-D", "-e", "-f", s.cfg)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := s.cmd
	s.owner.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, "sshd to listen", func() bool {
		c, err := s.ns.dial(context.Background(), net.JoinHostPort(s.listen, "22"))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (s *sshd) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// killAll kills the listener and every session process it forked (they
// call setsid, so a process group would not reach them), as a crash of
// the server machine would.
func (s *sshd) killAll() {
	// Deepest first: the process that holds the connection dies before
	// its parents could notice and close it politely.
	for _, p := range descendants(s.cmd.Process.Pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces; cut after ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[n] = pp
		}
	}
	depth := map[int]int{}
	var out []int
	for n := range parent {
		d := 0
		for p := parent[n]; p > 1; p = parent[p] {
			d++
			if p == pid {
				out = append(out, n)
				depth[n] = d
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return depth[out[i]] > depth[out[j]] })
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func netnsFromName(name string) (netns.NsHandle, error) { return netns.GetFromName(name) }

const sigHUP = syscall.SIGHUP
