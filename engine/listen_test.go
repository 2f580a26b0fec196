package engine_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/proxy"

	"github.com/shunt-dev/shunt/platform"
)

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// With tun.enabled false nothing is routed and no device is opened; a
// static tunnel carries its clients to its destination through its
// profile, whatever the rules say, and status lists it. A profile that
// carries only its users' flows refuses another user's client at once.
func TestEngineWithoutTUN(t *testing.T) {
	w := newWorld(t)
	port := freePort(t)
	e := w.start(w.config(fmt.Sprintf(`  enabled: false
static_tunnels:
  - listen: 127.0.0.1:%d
    destination: 10.9.0.7:143
    profile: gw
rules:
  - name: nothing-tunnelled
    destinations: [10.9.0.0/16]
    action: block
`, port)))
	if n := w.capture.Ups(); n != 0 {
		t.Errorf("capture set up %d times without a TUN", n)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, 256<<10)
	if got := w.forwarded(); len(got) != 1 || got[0] != "10.9.0.7:143" {
		t.Errorf("the SSH server forwarded to %v, want 10.9.0.7:143", got)
	}
	st := e.Status()
	if len(st.Listeners) != 1 || st.Listeners[0].Kind != "static" || st.Listeners[0].Clients != 1 || !st.NoTUN || st.Capture {
		t.Errorf("status %+v", st)
	}
	var via bool
	for _, f := range st.Flows {
		via = via || strings.HasPrefix(f.Via, "static 127.0.0.1:")
	}
	if !via {
		t.Errorf("flows %+v: none came through the static tunnel", st.Flows)
	}
	c.Close()

	// Another user's client: refused, the connection reset.
	w.owners.SetAny(&platform.Owner{UID: 2000})
	// The reset can come before the dial returns, or at the first read.
	d, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second)
	if err == nil {
		defer d.Close()
		d.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = d.Read(make([]byte, 1))
	}
	if err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("another user's static tunnel client: %v, want a reset", err)
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		t.Error("the static tunnel still listens after Stop")
	}
}

// A SOCKS client's requests go through the rules: by name when it gives
// one (opened by name on the far side), refused with the SOCKS reply for
// a blocked destination; with socks_users, only they get in.
func TestEngineSOCKS(t *testing.T) {
	w := newWorld(t)
	port := freePort(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	w.start(w.config(fmt.Sprintf(`  enabled: false
socks_listen: 127.0.0.1:%d
socks_users:
  - name: carol
    password_hash: %q
rules:
  - name: no-telnet
    ports: [23]
    action: block
  - name: corp
    destinations: [10.1.0.0/24, "*.corp.example"]
    action: tunnel
    profile: gw
`, port, hash)))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dialer := func(user, pass string) proxy.ContextDialer {
		d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: user, Password: pass}, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		return d.(proxy.ContextDialer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, dst := range []string{"wiki.corp.example:443", "10.1.0.7:80"} {
		c, err := dialer("carol", "s3cret").DialContext(ctx, "tcp", dst)
		if err != nil {
			t.Fatalf("SOCKS to %s: %v", dst, err)
		}
		roundTrip(t, c, 64<<10)
		c.Close()
		if got := w.forwarded(); len(got) != i+1 || got[i] != dst {
			t.Errorf("the SSH server forwarded to %v, want %s last", got, dst)
		}
	}
	if _, err := dialer("carol", "s3cret").DialContext(ctx, "tcp", "wiki.corp.example:23"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("SOCKS to a blocked port: %v, want connection refused", err)
	}
	if _, err := dialer("carol", "wrong").DialContext(ctx, "tcp", "10.1.0.7:80"); err == nil {
		t.Error("a wrong password got through")
	}
	if n := len(w.forwarded()); n != 2 {
		t.Errorf("the SSH server forwarded %d flows, want the 2 allowed", n)
	}
}
