package socks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/net/nettest"
	"golang.org/x/net/proxy"
)

// refusalErr is an error that names its refusal, as the engine's do.
type refusalErr struct{ r Refusal }

func (e refusalErr) Error() string    { return "refused: " + e.r.String() }
func (e refusalErr) Refusal() Refusal { return e.r }

// rig is a Server on a loopback listener whose Connect records each
// request and echoes what the client sends (or does what refuse says).
type rig struct {
	addr  string
	reqs  chan Request
	log   *logtest.Hook
	flows sync.WaitGroup
}

// startRig serves s (Connect and Log filled in when nil) until the test
// ends.
func startRig(t *testing.T, s *Server) *rig {
	t.Helper()
	r := &rig{reqs: make(chan Request, 16)}
	if s.Log == nil {
		l, hook := logtest.NewNullLogger()
		l.SetLevel(logrus.DebugLevel)
		s.Log, r.log = l, hook
	}
	if s.Connect == nil {
		s.Connect = r.echo
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
		r.flows.Wait()
		if r.log != nil {
			for _, e := range r.log.AllEntries() {
				line, _ := e.String()
				if strings.Contains(line, "s3cret") || strings.Contains(line, "wr0ng") {
					t.Errorf("a password in the log: %s", line)
				}
			}
		}
	})
	return r
}

// echo is a Connect that accepts every request and echoes.
func (r *rig) echo(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
	r.reqs <- req
	c, err := accept()
	if err != nil {
		return err
	}
	r.flows.Go(func() {
		// The wrappers hide ReadFrom and WriteTo: a plain copy.
		io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
		c.Close()
	})
	return nil
}

func (r *rig) request(t *testing.T) Request {
	t.Helper()
	select {
	case req := <-r.reqs:
		return req
	case <-time.After(20 * time.Second):
		t.Fatal("no request reached Connect")
	}
	return Request{}
}

// debugLines is how many debug lines the server logged.
func (r *rig) debugLines() int {
	n := 0
	for _, e := range r.log.AllEntries() {
		if e.Level == logrus.DebugLevel {
			n++
		}
	}
	return n
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second)) // a hung test fails, it does not hang
	return c.(*net.TCPConn)
}

// exchange sends b and returns all the server answers until it closes.
func exchange(t *testing.T, addr string, b []byte, closeWrite bool) []byte {
	t.Helper()
	c := dial(t, addr)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.CloseWrite()
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading until the server closes: %v (got % x)", err, got)
	}
	return got
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	hello5     = []byte{5, 1, methodNone}
	helloPass5 = []byte{5, 1, methodPassword}
	chose0     = []byte{5, 0}
	chose2     = []byte{5, 2}
	refused5   = func(code byte) []byte { return appendReply5(nil, code, netip.AddrPort{}) }
	refused4   = appendReply4(nil, rep4Failed, netip.AddrPort{})
)

func authMsg(user, pass string) []byte {
	b := append([]byte{1, byte(len(user))}, user...)
	return append(append(b, byte(len(pass))), pass...)
}

// TestBadInput: each is answered with the reply the protocol has for it
// (or none), logged at debug level, and closed; Connect never sees it,
// and the server serves the next client.
func TestBadInput(t *testing.T) {
	alice := func(user, pass string) bool { return user == "alice" && pass == "s3cret" }
	tests := []struct {
		name       string
		auth       bool
		send       []byte
		closeWrite bool // the client ends its side after sending
		want       []byte
	}{
		{"NMETHODS 0", false, []byte{5, 0}, false, []byte{5, 0xFF}},
		{"no method the server takes", false, helloPass5, false, []byte{5, 0xFF}},
		{"no password method, auth required", true, hello5, false, []byte{5, 0xFF}},
		{"bind", false, cat(hello5, req5(cmdBind, atypIPv4, []byte{10, 0, 0, 1}, 80)), false, cat(chose0, refused5(rep5BadCommand))},
		{"udp associate", false, cat(hello5, req5(cmdAssociate, atypIPv4, []byte{0, 0, 0, 0}, 0)), false, cat(chose0, refused5(rep5BadCommand))},
		{"unknown command", false, cat(hello5, req5(0x42, atypDomain, domain("x.test"), 80)), false, cat(chose0, refused5(rep5BadCommand))},
		{"unknown address type", false, cat(hello5, []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}), false, cat(chose0, refused5(rep5BadAddress))},
		{"empty domain", false, cat(hello5, req5(cmdConnect, atypDomain, domain(""), 80)), false, cat(chose0, refused5(rep5Failure))},
		{"request of version 4 after a SOCKS5 greeting", false, cat(hello5, req4(cmdConnect, 80, [4]byte{1, 2, 3, 4}, "", "")), false, cat(chose0, refused5(rep5Failure))},
		{"truncated greeting", false, []byte{5, 3, 0}, true, nil},
		{"truncated request", false, cat(hello5, req5(cmdConnect, atypDomain, domain("internal.test"), 80)[:9]), true, chose0},
		{"not SOCKS", false, []byte("GET http://internal.test/ HTTP/1.1\r\nHost: internal.test\r\n\r\n"), false, nil},
		{"wrong version", false, []byte{6, 1, 0}, false, nil},
		{"empty", false, nil, true, nil},
		{"wrong password", true, cat(helloPass5, authMsg("alice", "wr0ng")), false, cat(chose2, []byte{1, authFailed})},
		{"unknown user", true, cat(helloPass5, authMsg("mallory", "s3cret")), false, cat(chose2, []byte{1, authFailed})},
		{"auth of another version", true, cat(helloPass5, []byte{5, 5}, []byte("alice"), []byte{6}, []byte("s3cret")), false, cat(chose2, []byte{1, authFailed})},
		{"socks4 bind", false, req4(cmdBind, 80, [4]byte{10, 0, 0, 1}, "", ""), false, refused4},
		{"socks4 0.0.0.0", false, req4(cmdConnect, 80, [4]byte{}, "", ""), false, refused4},
		{"socks4 user id too long", false, cat(req4(cmdConnect, 80, [4]byte{10, 0, 0, 1}, "", "")[:8], bytes.Repeat([]byte("u"), 300)), false, refused4},
		{"socks4a host too long", false, cat(req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", ""), bytes.Repeat([]byte("h"), 300)), false, refused4},
		{"socks4a empty host", false, cat(req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", ""), []byte{0}), false, refused4},
		{"socks4 while a password is required", true, req4(cmdConnect, 80, [4]byte{10, 0, 0, 1}, "alice", ""), false, refused4},
		{"socks4a while a password is required", true, req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "alice", "internal.test"), false, refused4},
		{"truncated socks4", false, req4(cmdConnect, 80, [4]byte{10, 0, 0, 1}, "alice", "")[:10], true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{}
			if tt.auth {
				s.Auth = alice
			}
			r := startRig(t, s)
			if got := exchange(t, r.addr, tt.send, tt.closeWrite); !bytes.Equal(got, tt.want) {
				t.Errorf("reply % x, want % x", got, tt.want)
			}
			select {
			case req := <-r.reqs:
				t.Errorf("Connect was called with %+v", req)
			default:
			}
			// The next client is served.
			conn, err := socks5Dialer(t, r.addr, tt.auth).Dial("tcp", "next.test:80")
			if err != nil {
				t.Fatalf("the next client: %v", err)
			}
			conn.Close()
			r.request(t)
			if r.debugLines() == 0 {
				t.Error("no debug line for the bad client")
			}
		})
	}
}

func socks5Dialer(t *testing.T, addr string, auth bool) proxy.Dialer {
	t.Helper()
	var a *proxy.Auth
	if auth {
		a = &proxy.Auth{User: "alice", Password: "s3cret"}
	}
	d, err := proxy.SOCKS5("tcp", addr, a, &net.Dialer{Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestXNetProxyClient runs golang.org/x/net/proxy's SOCKS5 client against
// the server: names are passed on as names, addresses as addresses, the
// authenticated user is in the request, and the flow carries data.
func TestXNetProxyClient(t *testing.T) {
	for _, auth := range []bool{false, true} {
		t.Run(fmt.Sprintf("auth=%v", auth), func(t *testing.T) {
			s := &Server{}
			if auth {
				s.Auth = func(user, pass string) bool { return user == "alice" && pass == "s3cret" }
			}
			r := startRig(t, s)
			d := socks5Dialer(t, r.addr, auth)
			user := ""
			if auth {
				user = "alice"
			}
			for _, tt := range []struct {
				addr string
				host string
				dst  string
			}{
				{"internal.test:80", "internal.test", ""},
				{"localhost:8080", "localhost", ""}, // a name that would resolve: still passed on
				{"10.1.2.3:443", "", "10.1.2.3:443"},
				{"[2001:db8::7]:22", "", "[2001:db8::7]:22"},
			} {
				c, err := d.Dial("tcp", tt.addr)
				if err != nil {
					t.Fatalf("%s: %v", tt.addr, err)
				}
				req := r.request(t)
				_, port, _ := net.SplitHostPort(tt.addr)
				want := Request{Version: 5, Client: addrPort(c.LocalAddr()), Local: netip.MustParseAddrPort(r.addr),
					Host: tt.host, Port: uint16(mustAtoi(t, port)), User: user}
				if tt.dst != "" {
					want.Dst = netip.MustParseAddrPort(tt.dst)
				}
				if req.Client.Addr() != netip.MustParseAddr("127.0.0.1") || req.Client.Port() == 0 {
					t.Errorf("%s: client %v", tt.addr, req.Client)
				}
				if req != want {
					t.Errorf("%s: request\n%+v, want\n%+v", tt.addr, req, want)
				}
				echoCheck(t, c, "ping "+tt.addr)
				c.Close()
			}
			if auth {
				bad, _ := proxy.SOCKS5("tcp", r.addr, &proxy.Auth{User: "alice", Password: "wr0ng"}, &net.Dialer{})
				if c, err := bad.Dial("tcp", "internal.test:80"); err == nil {
					c.Close()
					t.Error("a wrong password was let in")
				}
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func echoCheck(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
}

// TestIPLiteralName: an address given as a name is an address.
func TestIPLiteralName(t *testing.T) {
	r := startRig(t, &Server{})
	for name, want := range map[string]string{"192.0.2.1": "192.0.2.1:80", "2001:db8::1": "[2001:db8::1]:80", "::ffff:192.0.2.1": "192.0.2.1:80"} {
		c := dial(t, r.addr)
		c.Write(cat(hello5, req5(cmdConnect, atypDomain, domain(name), 80)))
		reply := make([]byte, 2+10)
		if _, err := io.ReadFull(c, reply); err != nil {
			t.Fatal(err)
		}
		if req := r.request(t); req.Host != "" || req.Dst != netip.MustParseAddrPort(want) {
			t.Errorf("%s: host %q dst %v, want dst %s", name, req.Host, req.Dst, want)
		}
		c.Close()
	}
	// A zone is not an address we pass on.
	c := dial(t, r.addr)
	c.Write(cat(hello5, req5(cmdConnect, atypDomain, domain("fe80::1%eth0"), 80)))
	if req := r.request(t); req.Host != "fe80::1%eth0" || req.Dst.IsValid() {
		t.Errorf("zoned: host %q dst %v", req.Host, req.Dst)
	}
}

// TestRefusals: Connect's errors map to the replies CONTEXT16 and RFC 1928
// give them.
func TestRefusals(t *testing.T) {
	tests := []struct {
		err    error
		code5  byte
		reason string
	}{
		{refusalErr{RefusalBlocked}, 5, "blocked"},
		{refusalErr{RefusalRefused}, 5, "refused"},
		{fmt.Errorf("open channel: %w", refusalErr{RefusalRefused}), 5, "wrapped"},
		{refusalErr{RefusalUnreachable}, 4, "unreachable"},
		{refusalErr{RefusalTimeout}, 4, "timeout"},
		{refusalErr{RefusalFailed}, 1, "failed"},
		{errors.New("something else"), 1, "no refusal"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			r := startRig(t, &Server{Connect: func(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
				return tt.err
			}})
			if got, want := exchange(t, r.addr, cat(hello5, req5(cmdConnect, atypDomain, domain("blocked.test"), 443)), false), cat(chose0, refused5(tt.code5)); !bytes.Equal(got, want) {
				t.Errorf("socks5 reply % x, want % x", got, want)
			}
			if got := exchange(t, r.addr, req4(cmdConnect, 443, [4]byte{0, 0, 0, 1}, "", "blocked.test"), false); !bytes.Equal(got, refused4) {
				t.Errorf("socks4 reply % x, want % x", got, refused4)
			}
		})
	}
}

// TestHandlerMistakes: Connect that neither accepts nor fails, accepts
// twice or late, or fails after accepting.
func TestHandlerMistakes(t *testing.T) {
	req := cat(hello5, req5(cmdConnect, atypIPv4, []byte{10, 0, 0, 1}, 80))
	ok5 := appendReply5(nil, rep5OK, netip.AddrPort{})
	t.Run("nil without accept", func(t *testing.T) {
		r := startRig(t, &Server{Connect: func(context.Context, Request, func() (net.Conn, error)) error { return nil }})
		if got, want := exchange(t, r.addr, req, false), cat(chose0, refused5(rep5Failure)); !bytes.Equal(got, want) {
			t.Errorf("reply % x, want % x", got, want)
		}
		if n := len(r.log.AllEntries()); n == 0 || r.log.LastEntry().Level != logrus.ErrorLevel {
			t.Error("the handler's bug is not logged as an error")
		}
	})
	t.Run("accept twice, then late", func(t *testing.T) {
		late := make(chan func() (net.Conn, error), 1)
		r := startRig(t, &Server{Connect: func(_ context.Context, _ Request, accept func() (net.Conn, error)) error {
			c, err := accept()
			if err != nil {
				return err
			}
			if _, err := accept(); err != errAcceptTwice {
				t.Errorf("second accept: %v", err)
			}
			c.Close()
			late <- accept
			return nil
		}})
		got := exchange(t, r.addr, req, false)
		if want := cat(chose0, ok5[:4]); !bytes.HasPrefix(got, want) || len(got) != 2+10 {
			t.Errorf("reply % x, want a success", got)
		}
		accept := <-late
		// ServeConn may still be finishing: wait until it has.
		for deadline := time.Now().Add(20 * time.Second); ; {
			_, err := accept()
			if err == errAcceptLate {
				break
			}
			if err != errAcceptTwice || time.Now().After(deadline) {
				t.Fatalf("late accept: %v", err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	t.Run("error after accept", func(t *testing.T) {
		r := startRig(t, &Server{Connect: func(_ context.Context, _ Request, accept func() (net.Conn, error)) error {
			if _, err := accept(); err != nil {
				return err
			}
			return refusalErr{RefusalRefused}
		}})
		// The success was sent; then the connection closes.
		if got := exchange(t, r.addr, req, false); len(got) != 2+10 || got[3] != rep5OK {
			t.Errorf("reply % x, want a success, then the close", got)
		}
	})
}

// TestPipelined: bytes the client sends right behind its request (no
// waiting for the replies) reach the upstream, and the connection still
// half-closes.
func TestPipelined(t *testing.T) {
	for _, tt := range []struct {
		name string
		auth bool
		send []byte
	}{
		{"socks5", false, cat(hello5, req5(cmdConnect, atypDomain, domain("internal.test"), 80))},
		{"socks5 with auth", true, cat(helloPass5, authMsg("alice", "s3cret"), req5(cmdConnect, atypIPv4, []byte{10, 0, 0, 1}, 80))},
		{"socks4a", false, req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "someone", "internal.test")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{}
			if tt.auth {
				s.Auth = func(u, p string) bool { return u == "alice" && p == "s3cret" }
			}
			halfClose := make(chan bool, 1)
			var r *rig
			s.Connect = func(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
				c, err := accept()
				if err != nil {
					return err
				}
				_, ok := c.(closeWriter)
				halfClose <- ok
				return r.echo(ctx, req, func() (net.Conn, error) { return c, nil })
			}
			r = startRig(t, s)
			payload := "GET / HTTP/1.1\r\nHost: internal.test\r\n\r\n"
			c := dial(t, r.addr)
			if _, err := c.Write(cat(tt.send, []byte(payload))); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(got), payload) {
				t.Errorf("echo % q, want it to end in the pipelined %q", got, payload)
			}
			if !<-halfClose {
				t.Error("the wrapped connection lost CloseWrite")
			}
		})
	}
}

// TestHandshakeTimeout: a client that says nothing is dropped, and others
// are served meanwhile.
func TestHandshakeTimeout(t *testing.T) {
	r := startRig(t, &Server{HandshakeTimeout: 50 * time.Millisecond})
	idle := dial(t, r.addr)
	half := dial(t, r.addr)
	half.Write([]byte{5, 1})
	d := socks5Dialer(t, r.addr, false)
	c, err := d.Dial("tcp", "internal.test:80")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	for _, c := range []net.Conn{idle, half} {
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Errorf("a silent client got % x, %v; want the close", b, err)
		}
	}
}

// TestServeEnds: Serve returns when ctx ends, dropping handshakes in
// progress, and when its listener is closed.
func TestServeEnds(t *testing.T) {
	s := &Server{HandshakeTimeout: time.Hour, Connect: func(context.Context, Request, func() (net.Conn, error)) error {
		return errors.New("not reached")
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	c := dial(t, ln.Addr().String())
	c.Write([]byte{5})
	time.Sleep(10 * time.Millisecond) // let the handshake start; the test holds without it
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("the client in its handshake: %v, want the close", err)
	}

	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- s.Serve(context.Background(), ln) }()
	ln.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve after its listener closed = %v, want nil", err)
	}
}

// TestServeConnPipe: ServeConn works on a connection without addresses
// or half-close (net.Pipe), and says so in the request.
func TestServeConnPipe(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	got := make(chan Request, 1)
	s := &Server{Log: logrus.New(), Connect: func(_ context.Context, req Request, accept func() (net.Conn, error)) error {
		got <- req
		c, err := accept()
		if err != nil {
			return err
		}
		if _, ok := c.(closeWriter); ok {
			t.Error("a pipe does not half-close")
		}
		go func() { io.Copy(c, c); c.Close() }()
		return nil
	}}
	done := make(chan struct{})
	go func() { s.ServeConn(context.Background(), server); close(done) }()
	client.SetDeadline(time.Now().Add(20 * time.Second))
	go client.Write(cat(req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", "internal.test"), []byte("ping")))
	reply := make([]byte, 8)
	if _, err := io.ReadFull(client, reply); err != nil || reply[1] != rep4OK {
		t.Fatalf("reply % x, %v", reply, err)
	}
	<-done
	echo := make([]byte, 4)
	if _, err := io.ReadFull(client, echo); err != nil || string(echo) != "ping" {
		t.Errorf("echo %q, %v", echo, err)
	}
	if req := <-got; req.Client.IsValid() || req.Local.IsValid() || req.Host != "internal.test" || req.Version != 4 {
		t.Errorf("request %+v", req)
	}
}

// scripted is a connection that reads a script and takes any write: the
// handshake with nothing else around it, for counting allocations.
type scripted struct {
	net.Conn // nil: only what ServeConn uses is implemented
	r        bytes.Reader
}

func (c *scripted) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *scripted) Write(b []byte) (int, error)      { return len(b), nil }
func (c *scripted) Close() error                     { return nil }
func (c *scripted) LocalAddr() net.Addr              { return tcpAddr }
func (c *scripted) RemoteAddr() net.Addr             { return tcpAddr }
func (c *scripted) SetDeadline(time.Time) error      { return nil }
func (c *scripted) SetReadDeadline(time.Time) error  { return nil }
func (c *scripted) SetWriteDeadline(time.Time) error { return nil }

var tcpAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1080}

func handshakeAllocs(ctx context.Context, script []byte) float64 {
	s := &Server{Log: logrus.New(), Connect: func(_ context.Context, req Request, accept func() (net.Conn, error)) error {
		_, err := accept()
		return err
	}}
	c := &scripted{}
	return testing.AllocsPerRun(200, func() {
		c.r.Reset(script)
		s.ServeConn(ctx, c)
	})
}

// TestAllocs keeps the new-flow path's allocations few. The bound has
// room; the numbers are logged.
func TestAllocs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, tt := range []struct {
		name   string
		script []byte
		max    float64
	}{
		{"socks5 address", cat(hello5, req5(cmdConnect, atypIPv4, []byte{10, 0, 0, 1}, 80)), 8},
		{"socks5 name", cat(hello5, req5(cmdConnect, atypDomain, domain("internal.test"), 80)), 9},
		{"socks4a", req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", "internal.test"), 9},
	} {
		bg := handshakeAllocs(context.Background(), tt.script)
		n := handshakeAllocs(ctx, tt.script)
		t.Logf("%s: %.0f allocations per handshake (%.0f with a context that cannot end)", tt.name, n, bg)
		if n > tt.max {
			t.Errorf("%s: %.0f allocations, want at most %.0f", tt.name, n, tt.max)
		}
	}
}

func BenchmarkHandshake(b *testing.B) {
	s := &Server{Log: logrus.New(), Connect: func(_ context.Context, req Request, accept func() (net.Conn, error)) error {
		_, err := accept()
		return err
	}}
	script := cat(hello5, req5(cmdConnect, atypDomain, domain("internal.test"), 80))
	c := &scripted{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		c.r.Reset(script)
		s.ServeConn(ctx, c)
	}
}

// TestPrefixConn: the wrapper behaves as a net.Conn (x/net/nettest), and
// reads what was pipelined before what the connection reads.
func TestPrefixConn(t *testing.T) {
	pair := func() (c1, c2 net.Conn, stop func(), err error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, err
		}
		defer ln.Close()
		a, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		b, err := ln.Accept()
		if err != nil {
			a.Close()
			return nil, nil, nil, err
		}
		return wrap(a, nil), b, func() { a.Close(); b.Close() }, nil
	}
	nettest.TestConn(t, pair)

	a, b, stop, err := pair()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := wrap(a.(halfCloser).Conn, []byte("pipelined "))
	go func() { b.Write([]byte("then read")); b.Close() }()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "pipelined then read" {
		t.Errorf("read %q, %v", got, err)
	}
}
