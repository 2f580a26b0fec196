package dns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/shunt-dev/shunt/internal/testns"
)

// lockedBuffer collects a program's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// dnsmasqPath is where dnsmasq is, or "" with what to do.
func dnsmasqPath() (string, string) {
	if p, err := exec.LookPath("dnsmasq"); err == nil {
		return p, ""
	}
	if _, err := os.Stat("/usr/sbin/dnsmasq"); err == nil {
		return "/usr/sbin/dnsmasq", ""
	}
	return "", "needs dnsmasq (apt-get install dnsmasq-base)"
}

// dnsmasq runs a dnsmasq on 127.0.0.1 (UDP and TCP on one port) that
// knows only what args say, asks no one, and logs every query.
type dnsmasq struct {
	addr netip.AddrPort
	log  *lockedBuffer
}

func startDnsmasq(t *testing.T, args ...string) *dnsmasq {
	t.Helper()
	bin, lack := dnsmasqPath()
	testns.Need(t, lack)
	for try := 0; ; try++ {
		port := freePort(t)
		out := &lockedBuffer{}
		cmd := exec.Command(bin, append([]string{
			"--no-daemon", "--conf-file=/dev/null", "--pid-file=",
			fmt.Sprintf("--port=%d", port), "--listen-address=127.0.0.1", "--bind-interfaces",
			"--no-resolv", "--no-hosts", "--no-negcache", "--cache-size=0",
			"--log-queries", "--log-facility=-",
		}, args...)...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var waitErr error
		go func() {
			waitErr = cmd.Wait()
			close(exited)
		}()
		d := &dnsmasq{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), log: out}
		// Ready when it answers; a port taken since freePort makes it
		// exit, and another port is tried.
		ready := make(chan bool, 1)
		go func() {
			// Until it answers or exits; 2000 tries (at least 20 s) guard
			// against a hang, and decide nothing else.
			for range 2000 {
				m := new(mdns.Msg)
				m.SetQuestion("ready.invalid.", mdns.TypeA)
				c := &mdns.Client{Timeout: 100 * time.Millisecond}
				if _, _, err := c.Exchange(m, d.addr.String()); err == nil {
					ready <- true
					return
				}
				select {
				case <-exited:
					ready <- false
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			ready <- false
		}()
		ok := <-ready
		stop := func() {
			cmd.Process.Kill()
			<-exited
		}
		if ok {
			t.Cleanup(stop)
			return d
		}
		stop()
		if try == 5 {
			t.Fatalf("dnsmasq did not start (%v):\n%s", waitErr, out)
		}
	}
}

// freePort returns a port that is free on 127.0.0.1 for UDP and TCP.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		pc.Close()
		if err == nil {
			l.Close()
			return uint16(pc.LocalAddr().(*net.UDPAddr).Port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// sync waits until dnsmasq has logged a query for marker (it logs in the
// order it answers), and returns the log up to there.
func (d *dnsmasq) sync(t *testing.T, marker string) string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(marker+".", mdns.TypeA)
	c := &mdns.Client{Timeout: 20 * time.Second}
	if _, _, err := c.Exchange(m, d.addr.String()); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if log := d.log.String(); strings.Contains(log, marker) {
			return log
		}
		if i == 2000 {
			t.Fatalf("dnsmasq did not log %s:\n%s", marker, d.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tcpTunnels is Tunnels whose channels are TCP connections to one
// address, as if the far side were on this host.
type tcpTunnels struct{ to netip.AddrPort }

func (tt tcpTunnels) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", tt.to.String())
}

// dnsmasq as the system's resolver, and another as the far side's: the
// first never hears of a name under corp.example.
func TestDnsmasq(t *testing.T) {
	var txt []string
	for _, c := range "abcd" {
		txt = append(txt, "--txt-record=big.example,"+strings.Repeat(string(c), 200))
	}
	local := startDnsmasq(t, append(txt,
		"--host-record=known.example,192.0.2.7,2001:db8::7",
		"--cname=www.example,known.example",
		"--address=/nx.example/",
	)...)
	far := startDnsmasq(t,
		"--host-record=wiki.corp.example,10.1.2.3",
		"--cname=docs.corp.example,wiki.corp.example",
	)
	ts := start(t, Options{
		Policy: Policy{
			Hosts:   []string{"mail.corp.example"},
			Through: []Through{{Domains: []string{"corp.example"}, Profile: "office", Server: office}},
		},
		Upstreams: []netip.AddrPort{local.addr},
		Tunnels:   tcpTunnels{far.addr},
	})
	known4, known6 := netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")
	wiki := netip.MustParseAddr("10.1.2.3")
	for _, network := range networks {
		if got := addrs(ts.ask(t, network, "known.example.", mdns.TypeA, 0)); !slices.Equal(got, []netip.Addr{known4}) {
			t.Errorf("%s A: %v", network, got)
		}
		if got := addrs(ts.ask(t, network, "known.example.", mdns.TypeAAAA, 1232)); !slices.Equal(got, []netip.Addr{known6}) {
			t.Errorf("%s AAAA: %v", network, got)
		}
		m := ts.ask(t, network, "www.example.", mdns.TypeA, 0)
		if _, ok := m.Answer[0].(*mdns.CNAME); !ok || !slices.Equal(addrs(m), []netip.Addr{known4}) {
			t.Errorf("%s CNAME:\n%v", network, m)
		}
		if m := ts.ask(t, network, "host.nx.example.", mdns.TypeA, 0); m.Rcode != mdns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN", network, mdns.RcodeToString[m.Rcode])
		}
		// Under the fake policy, whatever the type.
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeMX, mdns.TypeHTTPS, mdns.TypeTXT} {
			m := ts.ask(t, network, "mail.corp.example.", qt, 0)
			if m.Rcode != mdns.RcodeSuccess || (qt == mdns.TypeA || qt == mdns.TypeAAAA) != (len(m.Answer) == 1) {
				t.Errorf("%s mail %s:\n%v", network, mdns.Type(qt), m)
			}
		}
		// Through the far side.
		if got := addrs(ts.ask(t, network, "docs.corp.example.", mdns.TypeA, 0)); !slices.Equal(got, []netip.Addr{wiki}) {
			t.Errorf("%s docs: %v", network, got)
		}
		if m := ts.ask(t, network, "nowhere.corp.example.", mdns.TypeA, 0); m.Rcode == mdns.RcodeSuccess && len(m.Answer) > 0 {
			t.Errorf("%s nowhere: %v", network, m)
		}
	}
	if got := ts.Names(wiki); !slices.Equal(got, []string{"docs.corp.example", "wiki.corp.example"}) {
		t.Errorf("Names(%v) = %v", wiki, got)
	}
	// Truncation: dnsmasq truncates over UDP, the server asks again over
	// TCP and truncates to the client's size; the client's retry over TCP
	// gets all four records.
	m := ts.ask(t, "udp", "big.example.", mdns.TypeTXT, 0)
	if !m.Truncated || len(m.Answer) >= 4 {
		t.Errorf("big over UDP: TC=%v, %d records", m.Truncated, len(m.Answer))
	}
	if m := ts.ask(t, "tcp", "big.example.", mdns.TypeTXT, 0); m.Truncated || len(m.Answer) != 4 {
		t.Errorf("big over TCP: TC=%v, %d records", m.Truncated, len(m.Answer))
	}

	log := local.sync(t, "marker.example")
	if os.Getenv("SHUNT_SHOW_DNSMASQ") != "" {
		t.Logf("local:\n%s\nfar:\n%s", log, far.log)
	}
	if strings.Contains(log, "corp.example") {
		t.Errorf("the local resolver heard of corp.example:\n%s", log)
	}
	if !strings.Contains(log, "query[A] known.example from 127.0.0.1") || !strings.Contains(log, "query[TXT] big.example") {
		t.Errorf("the local resolver's log lacks the forwarded queries:\n%s", log)
	}
	if flog := far.sync(t, "marker.example"); !strings.Contains(flog, "query[A] docs.corp.example") {
		t.Errorf("the far side's log:\n%s", flog)
	}
}
