package platform

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/internal/testns"
	"github.com/shunt-dev/shunt/tun"
)

// ResolvedRootEnv names a directory holding Debian's systemd-resolved
// unpacked (dpkg-deb -x, which runs no maintainer script: installing the
// package would rewrite the machine's /etc/resolv.conf), and
// libsystemd-shared of the same version beside it. .ci/run fetches both.
const ResolvedRootEnv = "SHUNT_RESOLVED_ROOT"

const realResolvedChildEnv = "SHUNT_TEST_REAL_RESOLVED_CHILD"

// TestRealResolved runs the real systemd-resolved in network and mount
// namespaces of the test's own (the test runs itself again under
// unshare): a tmpfs on /run, its own bus, a resolv.conf and resolved.conf
// of the test's, and the systemd-resolve user added to a private copy of
// /etc/passwd. shunt's TUN device gets the routing domain, a name under it
// is resolved through resolved and its query arrives on the TUN, where
// the test answers it; a name outside it does not come; Close reverts the
// link.
func TestRealResolved(t *testing.T) {
	root := os.Getenv(ResolvedRootEnv)
	bin := filepath.Join(root, "lib", "systemd", "systemd-resolved")
	if os.Getenv(realResolvedChildEnv) == "" {
		lack := ""
		switch {
		case os.Geteuid() != 0:
			lack = "needs root for network and mount namespaces"
		case root == "":
			lack = "needs " + ResolvedRootEnv + ": a directory with systemd-resolved and libsystemd-shared unpacked by `apt-get download` and `dpkg-deb -x` (as .ci/run does)"
		}
		if _, err := exec.LookPath("unshare"); err != nil && lack == "" {
			lack = "needs unshare (Debian package util-linux)"
		}
		if _, err := exec.LookPath("dbus-daemon"); err != nil && lack == "" {
			lack = "needs dbus-daemon (Debian package dbus-daemon)"
		}
		if _, err := os.Stat(bin); err != nil && lack == "" {
			lack = ResolvedRootEnv + " holds no systemd-resolved: " + err.Error()
		}
		testns.Need(t, lack)
		cmd := exec.Command("unshare", "--mount", "--net", "--propagation", "private", os.Args[0], "-test.run=^TestRealResolved$", "-test.v")
		cmd.Env = append(os.Environ(), realResolvedChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestRealResolved")) {
			t.Fatalf("in namespaces: %v\n%s", err, out)
		}
		t.Logf("in namespaces:\n%s", out)
		return
	}
	realResolvedChild(t, root, bin)
}

func realResolvedChild(t *testing.T, root, bin string) {
	mustMount := func(src, dst, fstype string, flags uintptr) {
		t.Helper()
		if err := unix.Mount(src, dst, fstype, flags, ""); err != nil {
			t.Fatalf("mount %s on %s: %v", src, dst, err)
		}
	}
	dir := t.TempDir()
	// resolved's runtime directory, and the link it finds resolv.conf by.
	mustMount("tmpfs", "/run", "tmpfs", 0)
	if err := os.Mkdir("/run/systemd", 0o755); err != nil {
		t.Fatal(err)
	}
	// A private /etc, a copy of the machine's: files bound over single
	// files of the machine's /etc would be detached by the kernel as soon
	// as the machine renames over them (useradd in another test renames
	// /etc/passwd), and a restarted resolved would not find its user.
	etc := filepath.Join(dir, "etc")
	if out, err := exec.Command("cp", "-a", "/etc/.", etc+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy /etc: %v\n%s", err, out)
	}
	mustMount(etc, "/etc", "", unix.MS_BIND)
	// Before the temporary directory goes (cleanups run last first): the
	// mounts inside the copy would keep it busy.
	t.Cleanup(func() {
		for _, m := range []string{"/etc/resolv.conf", "/etc/systemd", "/etc"} {
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	if _, err := user.Lookup("systemd-resolve"); err != nil {
		for _, f := range []struct{ file, line string }{
			{"/etc/passwd", "systemd-resolve:x:64991:64991:shunt test:/:/usr/sbin/nologin\n"},
			{"/etc/group", "systemd-resolve:x:64991:\n"},
		} {
			data, err := os.ReadFile(f.file)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, f.file, string(data)+f.line, 0o644)
		}
	}
	// resolved reads a foreign /etc/resolv.conf as its global servers.
	sysRC := filepath.Join(dir, "etc-resolv.conf")
	writeFile(t, sysRC, "nameserver 192.0.2.1\n", 0o644)
	mustMount(sysRC, "/etc/resolv.conf", "", unix.MS_BIND)
	if fi, err := os.Stat("/etc/systemd"); err == nil && fi.IsDir() {
		mustMount("tmpfs", "/etc/systemd", "tmpfs", 0)
		writeFile(t, "/etc/systemd/resolved.conf", "[Resolve]\nFallbackDNS=\nLLMNR=no\nMulticastDNS=no\nDNSSEC=no\nDNSStubListener=yes\n", 0o644)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	netlink.LinkSetUp(lo)

	// The TUN before resolved starts: resolved learns the links at start,
	// before it takes its bus name.
	const devName = "shdns0"
	dev, _, err := tun.Open(tun.Options{Name: devName, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	closeDev := sync.OnceValue(dev.Close)
	defer closeDev()
	network, err := OpenCapture(DefaultConfig(devName, nil), quiet())
	if err != nil {
		t.Fatal(err)
	}
	closeNetwork := sync.OnceValue(network.Close)
	defer closeNetwork()
	answers := serveDNSOnTUN(dev, netip.MustParseAddr("10.1.2.3"))

	addr := privateBus(t)
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	owned := make(chan *dbus.Signal, 10)
	conn.Signal(owned)
	if err := conn.AddMatchSignal(dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, resolvedBusName)); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("systemd-resolved's log:\n%s", log.String())
		}
	}()
	stop := startResolved(t, root, bin, addr, owned, &log)
	defer func() { stop() }()

	state, rc := dnsDirs(t)
	os.MkdirAll(filepath.Dir(rc), 0o755)
	if err := os.Symlink("/run/systemd/resolve/stub-resolv.conf", rc); err != nil {
		t.Fatal(err)
	}
	d, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Bus: busDialer(addr), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if d.Mode() != DNSModeResolved {
		t.Fatalf("auto chose %s", d.Mode())
	}
	if got := apStrings(d.Upstreams()); !slices.Equal(got, []string{"192.0.2.1:53"}) {
		t.Errorf("upstreams %v, want the global server read from /etc/resolv.conf", got)
	}
	if err := d.Set(DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: []string{"corp.example"}, Device: devName}); err != nil {
		t.Fatal(err)
	}
	mgr := conn.Object(resolvedBusName, resolvedPath)
	link := linkState(t, conn, devName)
	want := "DNS [2/169.254.83.53 10/fd53:6875:6e74::53] Domains [{corp.example true}] DefaultRoute false LLMNR no MulticastDNS no DNSSEC no"
	t.Logf("resolved's link while shunt runs: %s", link)
	if link != want {
		t.Errorf("link while shunt runs:\n%s\nwant\n%s", link, want)
	}

	// A name outside the domain: not to the TUN (resolved sends it to
	// 192.0.2.1, which this namespace cannot reach). One under it: to the
	// TUN, answered there. The TUN's queue is in order, so once the
	// second query has come, the first would have come before it.
	if _, err := resolveHostname(mgr, "www.example.org"); err == nil {
		t.Error("www.example.org resolved in a namespace without a route")
	}
	ips, err := resolveHostname(mgr, "wiki.corp.example")
	if err != nil || !slices.Equal(ips, []string{"10.1.2.3"}) {
		t.Errorf("wiki.corp.example through resolved: %v, %v", ips, err)
	}
	t.Logf("queries on the TUN: %v; upstreams %v", answers.names(), d.Upstreams())
	if names := answers.names(); slices.Contains(names, "www.example.org.") || !slices.Contains(names, "wiki.corp.example.") {
		t.Errorf("queries on the TUN: %v", names)
	}

	// resolved restarts (an upgrade) and forgets the link: shunt
	// configures it again. (resolved keeps a link's settings in
	// /run/systemd/resolve/netif/ across a restart; without that file,
	// as after a crash of resolved, only shunt's watch brings them back.)
	// A bound for a broken watch, generous: it never decides a pass.
	stop()
	saved, _ := filepath.Glob("/run/systemd/resolve/netif/*")
	for _, f := range saved {
		os.Remove(f)
	}
	stop = startResolved(t, root, bin, addr, owned, &log)
	for deadline := time.Now().Add(time.Minute); linkState(t, conn, devName) != want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after resolved restarted, the link is %s", linkState(t, conn, devName))
		}
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	got := linkState(t, conn, devName)
	t.Logf("resolved's link after Close: %s", got)
	if !strings.HasPrefix(got, "DNS [] Domains [] ") {
		t.Errorf("link after Close: %s", got)
	}

	// The device goes first (shunt's TUN closes as it dies): resolved
	// forgets the link, and Close has nothing left to do.
	d, err = NewOSDNS(DNSOptions{Mode: DNSModeResolved, ResolvConf: rc, Bus: busDialer(addr), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: []string{"corp.example"}, Device: devName}); err != nil {
		t.Fatal(err)
	}
	closeNetwork()
	closeDev()
	if err := d.Close(); err != nil {
		t.Errorf("Close after the device went: %v", err)
	}
}

// linkState describes resolved's view of the link.
func linkState(t *testing.T, conn *dbus.Conn, dev string) string {
	t.Helper()
	l, err := netlink.LinkByName(dev)
	if err != nil {
		t.Fatal(err)
	}
	var path dbus.ObjectPath
	if err := conn.Object(resolvedBusName, resolvedPath).Call(resolvedManager+".GetLink", 0, int32(l.Attrs().Index)).Store(&path); err != nil {
		t.Fatal(err)
	}
	obj := conn.Object(resolvedBusName, path)
	var servers []linkAddr
	var domains []linkDomain
	var defaultRoute bool
	var llmnr, mdns, dnssec string
	for name, dst := range map[string]any{"DNS": &servers, "Domains": &domains, "DefaultRoute": &defaultRoute, "LLMNR": &llmnr, "MulticastDNS": &mdns, "DNSSEC": &dnssec} {
		if err := getProperty(obj, resolvedLink, name, dst); err != nil {
			t.Fatalf("link property %s: %v", name, err)
		}
	}
	var s []string
	for _, a := range servers {
		ip, _ := netip.AddrFromSlice(a.Address)
		s = append(s, fmt.Sprintf("%d/%v", a.Family, ip))
	}
	return fmt.Sprintf("DNS %v Domains %v DefaultRoute %v LLMNR %s MulticastDNS %s DNSSEC %s", s, domains, defaultRoute, llmnr, mdns, dnssec)
}

// resolveHostname asks resolved for name's IPv4 addresses.
func resolveHostname(mgr dbus.BusObject, name string) ([]string, error) {
	var addrs []struct {
		Ifindex int32
		Family  int32
		Address []byte
	}
	var canonical string
	var flags uint64
	err := mgr.Call(resolvedManager+".ResolveHostname", 0, int32(0), name, int32(unix.AF_INET), uint64(0)).Store(&addrs, &canonical, &flags)
	var ips []string
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.Address)
		ips = append(ips, ip.String())
	}
	return ips, err
}

// tunDNS answers the DNS queries that arrive on a TUN device for shunt's
// server: A queries with one address, anything else with no records.
type tunDNS struct {
	mu   sync.Mutex
	seen []string
}

func (a *tunDNS) names() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

func serveDNSOnTUN(dev tun.Device, answer netip.Addr) *tunDNS {
	a := &tunDNS{}
	go func() {
		bufs := make([][]byte, dev.BatchSize())
		sizes := make([]int, len(bufs))
		for i := range bufs {
			bufs[i] = make([]byte, tun.Headroom+65535)
		}
		for {
			n, err := dev.Read(bufs, sizes, tun.Headroom)
			if err != nil {
				return
			}
			for i := range n {
				if reply := a.answer(bufs[i][tun.Headroom:tun.Headroom+sizes[i]], answer); reply != nil {
					out := append(make([]byte, tun.Headroom), reply...)
					dev.Write([][]byte{out}, tun.Headroom)
				}
			}
		}
	}()
	return a
}

// answer returns the IP packet that answers pkt, a UDP DNS query to
// shunt's server, or nil.
func (a *tunDNS) answer(pkt []byte, answer netip.Addr) []byte {
	var src, dst tcpip.Address
	var payload []byte
	switch {
	case len(pkt) >= header.IPv4MinimumSize && header.IPVersion(pkt) == 4:
		ip := header.IPv4(pkt)
		if ip.Protocol() != uint8(header.UDPProtocolNumber) || ip.DestinationAddress().As4() != netlayout.DNS4.As4() {
			return nil
		}
		src, dst, payload = ip.SourceAddress(), ip.DestinationAddress(), ip.Payload()
	case len(pkt) >= header.IPv6MinimumSize && header.IPVersion(pkt) == 6:
		ip := header.IPv6(pkt)
		if ip.NextHeader() != uint8(header.UDPProtocolNumber) || ip.DestinationAddress().As16() != netlayout.DNS6.As16() {
			return nil
		}
		src, dst, payload = ip.SourceAddress(), ip.DestinationAddress(), ip.Payload()
	default:
		return nil
	}
	if len(payload) < header.UDPMinimumSize {
		return nil
	}
	udp := header.UDP(payload)
	var q dns.Msg
	if udp.DestinationPort() != 53 || q.Unpack(udp.Payload()) != nil || len(q.Question) != 1 {
		return nil
	}
	a.mu.Lock()
	a.seen = append(a.seen, q.Question[0].Name)
	a.mu.Unlock()
	r := new(dns.Msg)
	r.SetReply(&q)
	if q.Question[0].Qtype == dns.TypeA {
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: answer.AsSlice()})
	}
	if opt := q.IsEdns0(); opt != nil {
		r.SetEdns0(opt.UDPSize(), false)
	}
	body, err := r.Pack()
	if err != nil {
		return nil
	}
	// The reply goes from dst back to src.
	udpLen := header.UDPMinimumSize + len(body)
	var out []byte
	if src.Len() == 4 {
		out = make([]byte, header.IPv4MinimumSize+udpLen)
		ip := header.IPv4(out)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(out)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: dst, DstAddr: src})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		out = make([]byte, header.IPv6MinimumSize+udpLen)
		header.IPv6(out).Encode(&header.IPv6Fields{PayloadLength: uint16(udpLen), TransportProtocol: header.UDPProtocolNumber, HopLimit: 64, SrcAddr: dst, DstAddr: src})
	}
	u := header.UDP(out[len(out)-udpLen:])
	u.Encode(&header.UDPFields{SrcPort: 53, DstPort: udp.SourcePort(), Length: uint16(udpLen)})
	copy(u.Payload(), body)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, dst, src, uint16(udpLen))
	xsum = checksum.Checksum(body, xsum)
	u.SetChecksum(^u.CalculateChecksum(xsum))
	return out
}

// startResolved starts systemd-resolved on the bus at addr and waits
// until it has its name (a signal on owned); stop ends it.
func startResolved(t *testing.T, root, bin, addr string, owned <-chan *dbus.Signal, log *bytes.Buffer) (stop func()) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stdout, cmd.Stderr = log, log
	libs, _ := filepath.Glob(filepath.Join(root, "usr", "lib", "*", "systemd"))
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+addr, "SYSTEMD_LOG_TARGET=console", "SYSTEMD_LOG_LEVEL=debug",
		"LD_LIBRARY_PATH="+strings.Join(libs, ":"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = sync.OnceFunc(func() {
		cmd.Process.Signal(unix.SIGTERM)
		<-exited
	})
	// A bound for a start that hangs, generous: it never decides a pass.
	// The bus also sends signals nobody asked for (NameAcquired), and
	// the name's release by an earlier resolved.
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case sig := <-owned:
			if sig.Name == "org.freedesktop.DBus.NameOwnerChanged" && len(sig.Body) == 3 && sig.Body[0] == resolvedBusName && sig.Body[2] != "" {
				return stop
			}
		case err := <-exited:
			t.Fatalf("systemd-resolved exited: %v", err)
		case <-deadline:
			stop()
			t.Fatal("systemd-resolved took no bus name in two minutes")
		}
	}
}
