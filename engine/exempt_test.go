package engine

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

// fakeDNS answers look-ups from a table the test changes, and counts them.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][]netip.Addr
	asked   int
}

func (d *fakeDNS) set(host string, addrs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers[host] = nil
	for _, a := range addrs {
		d.answers[host] = append(d.answers[host], netip.MustParseAddr(a))
	}
}

func (d *fakeDNS) lookup(_ context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	if as, ok := d.answers[host]; ok {
		return as, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func exemptPlan(t *testing.T, host string) *Plan {
	t.Helper()
	return capsPlan(t, "kill_switch: true\nprofiles:\n  - name: p\n    host: "+host+"\n    identity_files: [/etc/shunt/id]\n    known_hosts: [/etc/shunt/known_hosts]\n    allowed_users: any\n"+
		"rules:\n  - destinations: [10.0.0.0/8]\n    action: tunnel\n    profile: p\n")
}

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// The kill switch's exemptions follow the SSH servers' addresses: asked
// once per plan (a DNS change of the rules' names asks nothing), the
// address the broker connects to after the name moved is exempt at once,
// a reload asks again and keeps the address in use, and a host the new
// plan no longer has loses its addresses.
func TestExemptionsFollowServers(t *testing.T) {
	dns := &fakeDNS{answers: map[string][]netip.Addr{}}
	dns.set("gw.example", "10.9.0.1")
	x := &exemptions{lookup: dns.lookup, log: logrus.New()}
	p1 := exemptPlan(t, "gw.example")

	if got := x.get(p1); !slices.Equal(got, addrs("10.9.0.1")) {
		t.Fatalf("at start: %v", got)
	}
	x.get(p1) // the routes changed with a rule's DNS answer
	if dns.asked != 1 {
		t.Errorf("asked %d times for one plan, want once", dns.asked)
	}

	if x.connected(p1, "gw.example", netip.MustParseAddr("10.9.0.1")) {
		t.Error("the address resolved at start was reported new")
	}
	// The server moves; the broker's own look-up finds the new address.
	dns.set("gw.example", "10.9.0.2")
	if !x.connected(p1, "gw.example", netip.MustParseAddr("::ffff:10.9.0.2")) {
		t.Error("a new address was not reported new")
	}
	if x.connected(p1, "gw.example", netip.MustParseAddr("10.9.0.2")) {
		t.Error("an exempt address was reported new again")
	}
	if got := x.get(p1); !slices.Equal(got, addrs("10.9.0.1", "10.9.0.2")) {
		t.Errorf("after the connection to the new address: %v", got)
	}

	// A reload: a new plan, asked again; the address in use (the last
	// connected to) stays, the one before it goes.
	dns.set("gw.example", "10.9.0.3")
	p2 := exemptPlan(t, "gw.example")
	if got := x.get(p2); !slices.Equal(got, addrs("10.9.0.3", "10.9.0.2")) {
		t.Errorf("after a reload: %v", got)
	}
	if dns.asked != 2 {
		t.Errorf("asked %d times after a reload, want 2", dns.asked)
	}

	// A reload that replaces the server: the old one's addresses go.
	dns.set("new.example", "10.8.0.1")
	p3 := exemptPlan(t, "new.example")
	if got := x.get(p3); !slices.Equal(got, addrs("10.8.0.1")) {
		t.Errorf("after the server was replaced: %v", got)
	}

	// A name that does not resolve now is exempt once connected to.
	p4 := exemptPlan(t, "later.example")
	if got := x.get(p4); len(got) != 0 {
		t.Errorf("an unresolvable name: %v", got)
	}
	if !x.connected(p4, "later.example", netip.MustParseAddr("10.7.0.1")) || !slices.Equal(x.get(p4), addrs("10.7.0.1")) {
		t.Errorf("connected to the unresolvable name: %v", x.get(p4))
	}
}

// The broker's dialer reports the host it was asked for and the address
// it reached.
func TestServerDialerReports(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	var host string
	var got netip.Addr
	d := serverDialer{Dialer: &net.Dialer{}, connected: func(h string, a netip.Addr) { host, got = h, a }}
	c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if host != "127.0.0.1" || got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("reported %q %v", host, got)
	}
	host = "none"
	if _, err := d.DialContext(context.Background(), "tcp", "127.0.0.1:1"); err == nil || host != "none" {
		t.Errorf("a failed dial: %v, reported %q", err, host)
	}
}
