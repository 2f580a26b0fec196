package gateway

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// echoServer answers each connection with what it reads, then closes its
// side when the client closes its own. It returns its address.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

type gatewayFixture struct {
	addr     string
	hostKey  ssh.PublicKey
	client   ssh.Signer // authorized with the given options
	stranger ssh.Signer // not authorized
}

func signer(t *testing.T, seed byte) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(append(make([]byte, 31), seed)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startGateway runs a server on loopback whose one authorized key (seed
// 1) carries options, with the given permit list.
func startGateway(t *testing.T, options string, permit ...string) gatewayFixture {
	t.Helper()
	host, client, stranger := signer(t, 100), signer(t, 1), signer(t, 2)
	line := strings.TrimSpace(options + " " + string(ssh.MarshalAuthorizedKey(client.PublicKey())))
	keys, err := ParseAuthorizedKeys("authorized_keys", []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePermit(permit)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{HostKey: host, AuthorizedKeys: keys, Permit: p, LoginGraceTime: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return gatewayFixture{addr: l.Addr().String(), hostKey: host.PublicKey(), client: client, stranger: stranger}
}

func (g gatewayFixture) dial(t *testing.T, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", g.addr, &ssh.ClientConfig{
		User:            "anyone",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(g.hostKey),
		Timeout:         30 * time.Second,
	})
}

func echoThrough(t *testing.T, c *ssh.Client, dst string) error {
	t.Helper()
	conn, err := c.Dial("tcp", dst)
	if err != nil {
		return err
	}
	defer conn.Close()
	msg := []byte("hello through the gateway")
	if _, err := conn.Write(msg); err != nil {
		return err
	}
	// Half-close: the echo server sees EOF, closes, and we see EOF.
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo = %q, want %q", got, msg)
	}
	return nil
}

func TestServerDirectTCPIP(t *testing.T) {
	echo := echoServer(t)
	g := startGateway(t, "", "127.0.0.0/8:"+fmt.Sprint(echo.Port()))
	c, err := g.dial(t, g.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoThrough(t, c, echo.String()); err != nil {
		t.Fatal(err)
	}
	// Several channels on one connection.
	for range 3 {
		if err := echoThrough(t, c, echo.String()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestServerRefusals(t *testing.T) {
	echo := echoServer(t)
	g := startGateway(t, fmt.Sprintf(`permitopen="127.0.0.1:%d",permitopen="127.0.0.2:*"`, echo.Port()), "127.0.0.1/32:"+fmt.Sprint(echo.Port()))
	if _, err := g.dial(t, g.stranger); err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("stranger logged in: %v", err)
	}
	c, err := g.dial(t, g.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoThrough(t, c, echo.String()); err != nil {
		t.Fatalf("permitted destination: %v", err)
	}
	var oce *ssh.OpenChannelError
	// permitopen allows 127.0.0.2, the permit list does not.
	if _, err := c.Dial("tcp", "127.0.0.2:1"); !errors.As(err, &oce) || oce.Reason != ssh.Prohibited || !strings.Contains(oce.Message, "in no permitted network") {
		t.Errorf("127.0.0.2:1: %v", err)
	}
	// Neither allows port 1 of 127.0.0.1.
	if _, err := c.Dial("tcp", "127.0.0.1:1"); !errors.As(err, &oce) || !strings.Contains(oce.Message, "permitopen") {
		t.Errorf("127.0.0.1:1: %v", err)
	}
	if _, _, err := c.OpenChannel("session", nil); !errors.As(err, &oce) || !strings.Contains(oce.Message, "only direct-tcpip") {
		t.Errorf("session: %v", err)
	}
	if _, err := c.Listen("tcp", "127.0.0.1:0"); err == nil {
		t.Error("remote forwarding allowed")
	}
}

func TestServerConnectFailed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	g := startGateway(t, "", "127.0.0.1")
	c, err := g.dial(t, g.client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var oce *ssh.OpenChannelError
	if _, err := c.Dial("tcp", closed); !errors.As(err, &oce) || oce.Reason != ssh.ConnectionFailed {
		t.Errorf("closed port: %v", err)
	}
}

func TestServerFrom(t *testing.T) {
	g := startGateway(t, `from="192.0.2.0/24"`, "127.0.0.1")
	if _, err := g.dial(t, g.client); err == nil {
		t.Error("key logged in from outside its from=")
	}
}

func TestServerMaxStartupsFull(t *testing.T) {
	host, client := signer(t, 100), signer(t, 1)
	keys, err := ParseAuthorizedKeys("k", ssh.MarshalAuthorizedKey(client.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{HostKey: host, AuthorizedKeys: keys, MaxStartups: MaxStartups{1, 100, 1}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Close(); <-served }()
	// A connection that never speaks holds the one unauthenticated slot.
	idle, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	buf := make([]byte, 64)
	if _, err := idle.Read(buf); err != nil { // the server's version line: admitted
		t.Fatal(err)
	}
	next, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if n, err := next.Read(buf); err == nil {
		t.Errorf("second unauthenticated connection admitted: %q", buf[:n])
	}
}

// TestServerOpenSSHClient: OpenSSH's ssh -W reaches the echo server
// through the gateway.
func TestServerOpenSSHClient(t *testing.T) {
	bin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("ssh not installed")
	}
	echo := echoServer(t)
	g := startGateway(t, "restrict,port-forwarding", "127.0.0.1:"+fmt.Sprint(echo.Port()))
	dir := t.TempDir()
	id := filepath.Join(dir, "id")
	block, err := ssh.MarshalPrivateKey(ed25519.NewKeyFromSeed(append(make([]byte, 31), 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(id, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(g.addr)
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(g.hostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "/dev/null", "-p", port, "-i", id, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile="+known, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-W", echo.String(), "someone@"+host)
	cmd.Stdin = strings.NewReader("through OpenSSH\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh -W: %v: %s", err, stderr.String())
	}
	if string(out) != "through OpenSSH\n" {
		t.Errorf("ssh -W echo = %q; stderr %s", out, stderr.String())
	}
}

// TestServerLoginGraceTime: a connection that never authenticates is
// closed once login_grace_time has passed.
func TestServerLoginGraceTime(t *testing.T) {
	keys, err := ParseAuthorizedKeys("k", ssh.MarshalAuthorizedKey(signer(t, 1).PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{HostKey: signer(t, 100), AuthorizedKeys: keys, LoginGraceTime: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Close(); <-served }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A generous bound, only so a broken server fails the test rather
	// than hanging it.
	c.SetDeadline(time.Now().Add(time.Minute))
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept an unauthenticated connection open")
	}
	// The server closes the connection just before it stops counting
	// it: wait for that.
	for end := time.Now().Add(time.Minute); s.startups.Pending() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("Pending = %d after the connection was dropped", s.startups.Pending())
		}
	}
}

type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if as, ok := r[host]; ok {
		return as, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// recordingDialer dials to instead of the address asked, and records
// what was asked.
type recordingDialer struct {
	to    string
	mu    sync.Mutex
	asked []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, addr)
	d.mu.Unlock()
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to)
}

// TestServerResolves: a name is resolved, and only its permitted
// addresses are dialled; a name none of whose addresses is permitted is
// refused without a dial.
func TestServerResolves(t *testing.T) {
	echo := echoServer(t)
	host, client := signer(t, 100), signer(t, 1)
	keys, err := ParseAuthorizedKeys("k", ssh.MarshalAuthorizedKey(client.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePermit([]string{"192.0.2.1:5432"})
	d := &recordingDialer{to: echo.String()}
	s, err := New(Options{HostKey: host, AuthorizedKeys: keys, Permit: p, Dialer: d, Resolver: fakeResolver{
		"db.internal":    {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.0.2.1")},
		"other.internal": {netip.MustParseAddr("10.0.0.2")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	defer func() { s.Close(); <-served }()
	c, err := ssh.Dial("tcp", l.Addr().String(), &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(client)}, HostKeyCallback: ssh.FixedHostKey(host.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echoThrough(t, c, "db.internal:5432"); err != nil {
		t.Fatal(err)
	}
	var oce *ssh.OpenChannelError
	if _, err := c.Dial("tcp", "other.internal:5432"); !errors.As(err, &oce) || oce.Reason != ssh.Prohibited {
		t.Errorf("other.internal: %v", err)
	}
	if _, err := c.Dial("tcp", "missing.internal:5432"); !errors.As(err, &oce) || !strings.Contains(oce.Message, "cannot resolve") {
		t.Errorf("missing.internal: %v", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.asked) != 1 || d.asked[0] != "192.0.2.1:5432" {
		t.Errorf("dialled %v, want only 192.0.2.1:5432", d.asked)
	}
}
