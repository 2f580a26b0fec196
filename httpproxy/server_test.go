package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoServer accepts connections on loopback and echoes each until the
// test ends.
func echoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

func TestConnectKeepsEarlyBytes(t *testing.T) {
	echo := echoServer(t)
	sp := newSplicer(t, "name.test")
	p := startProxy(t, &Server{Connect: sp.Connect})

	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// The request and the first tunnel bytes in one write: they reach the
	// proxy's bufio.Reader together.
	io.WriteString(c, "CONNECT name.test:"+itoa(echo.Port())+" HTTP/1.1\r\nHost: x\r\n\r\nearly ")
	want := connectOK + "early "
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	io.WriteString(c, "later")
	c.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "later" {
		t.Fatalf("after the reply: %q, %v", rest, err)
	}
	reqs := sp.requests()
	if len(reqs) != 1 {
		t.Fatalf("Connect saw %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "CONNECT" || r.Host != "name.test" || r.Port != echo.Port() || r.Dst.IsValid() {
		t.Errorf("request %+v: want CONNECT to name.test by name, no Dst", r)
	}
	if r.Client != c.LocalAddr().(*net.TCPAddr).AddrPort() || r.Local.String() != p.addr {
		t.Errorf("request %+v: client/local not the connection's ends (%v, %v)", r, c.LocalAddr(), p.addr)
	}
}

// TestConnectTargets checks how the authority becomes the Request, with
// a Connect that records and refuses.
func TestConnectTargets(t *testing.T) {
	for _, tc := range []struct {
		target string
		host   string
		dst    string
		port   uint16
	}{
		{"example.com:443", "example.com", "", 443},
		{"Name_1.test:1", "Name_1.test", "", 1},
		{"10.1.2.3:22", "", "10.1.2.3:22", 22},
		{"[2001:db8::1]:443", "", "[2001:db8::1]:443", 443},
		{"[::ffff:10.0.0.1]:80", "", "[::ffff:10.0.0.1]:80", 80},
	} {
		var got Request
		p := startProxy(t, &Server{Connect: func(_ context.Context, req Request, _ func() (net.Conn, error)) error {
			got = req
			return refusal{RefusalBlocked}
		}})
		resp, _ := roundTrip(t, p.addr, "CONNECT "+tc.target+" HTTP/1.1\r\n\r\n")
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d", tc.target, resp.StatusCode)
		}
		var wantDst netip.AddrPort
		if tc.dst != "" {
			wantDst = netip.MustParseAddrPort(tc.dst)
		}
		if got.Host != tc.host || got.Dst != wantDst || got.Port != tc.port || got.Method != "CONNECT" {
			t.Errorf("%s: request %+v, want host %q dst %v port %d", tc.target, got, tc.host, wantDst, tc.port)
		}
	}
}

// TestBadRequests: each gets its status and a one-line text, Connect is
// not called, nothing is logged above debug, and the server goes on
// serving.
func TestBadRequests(t *testing.T) {
	huge := "GET http://a.test/ HTTP/1.1\r\nX-Big: " + strings.Repeat("x", 2000) + "\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
		body      string
	}{
		{"origin form", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "HTTP proxy, not a web server"},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n", 400, "not a web server"},
		{"CONNECT path", "CONNECT /rpc HTTP/1.1\r\n\r\n", 400, "not a web server"},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"CONNECT port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n", 400, "port"},
		{"CONNECT port too big", "CONNECT example.com:65536 HTTP/1.1\r\n\r\n", 400, "port"},
		{"CONNECT user info", "CONNECT u:p@example.com:443 HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"CONNECT bare IPv6", "CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n", 400, ""},
		{"CONNECT zone", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n", 400, ""},
		{"CONNECT bad name", "CONNECT a$b.test:443 HTTP/1.1\r\n\r\n", 400, "neither an IP address nor a DNS name"},
		{"https URL", "GET https://example.com/ HTTP/1.1\r\n\r\n", 400, "use CONNECT"},
		{"ftp URL", "GET ftp://example.com/ HTTP/1.1\r\n\r\n", 400, "only http://"},
		{"URL without host", "GET http:///x HTTP/1.1\r\n\r\n", 400, ""},
		{"garbage", "hello there\r\n\r\n", 400, "malformed request head"},
		{"bad header line", "GET http://a.test/ HTTP/1.1\r\nProxy-Authorization secret-token\r\n\r\n", 400, "malformed"},
		{"two lengths", "POST http://a.test/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "malformed"},
		{"HTTP/2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"},
		{"oversized head", huge, 431, "larger than 1024 bytes"},
		{"oversized line", "GET http://a.test/" + strings.Repeat("a", 8000) + " HTTP/1.1\r\n\r\n", 431, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			called := false
			p := startProxy(t, &Server{MaxHeaderBytes: 1024, Connect: func(context.Context, Request, func() (net.Conn, error)) error {
				called = true
				return nil
			}})
			resp, body := roundTrip(t, p.addr, tc.raw)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.body) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
				t.Errorf("body %q is not one line", body)
			}
			if strings.Contains(body, "secret") || strings.Contains(p.logs.String(), "secret") {
				t.Errorf("a credential was echoed or logged: %q / %s", body, p.logs)
			}
			if called {
				t.Error("Connect was called")
			}
			if !strings.Contains(p.logs.String(), "level=debug") || strings.Contains(p.logs.String(), "level=warn") {
				t.Errorf("want debug lines only, got:\n%s", p.logs)
			}
			// Still serving.
			resp, _ = roundTrip(t, p.addr, "GET / HTTP/1.1\r\n\r\n")
			if resp.StatusCode != 400 {
				t.Errorf("the next client got %d", resp.StatusCode)
			}
		})
	}
}

// TestNotProxyNamesListener: the 400 for the proxy itself says how to use
// it, with the listener's address.
func TestNotProxyNamesListener(t *testing.T) {
	p := startProxy(t, &Server{Connect: func(context.Context, Request, func() (net.Conn, error)) error { return nil }})
	_, body := roundTrip(t, p.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.Contains(body, "curl -x http://"+p.addr) || !strings.Contains(body, "HTTPS_PROXY=http://"+p.addr) {
		t.Errorf("body %q does not say how to use the proxy", body)
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		text   string
	}{
		{refusal{RefusalBlocked}, 403, "is blocked by shunt's rules"},
		{refusal{RefusalRefused}, 502, "refused the connection"},
		{refusal{RefusalUnreachable}, 502, "is unreachable"},
		{refusal{RefusalTimeout}, 504, "timed out"},
		{refusal{RefusalFailed}, 502, "could not connect"},
		{errors.New("secret-engine-detail"), 502, "could not connect"},
		{context.DeadlineExceeded, 504, "timed out"},
		{wrapped{refusal{RefusalBlocked}}, 403, "blocked"},
	} {
		p := startProxy(t, &Server{Connect: func(context.Context, Request, func() (net.Conn, error)) error { return tc.err }})
		for _, raw := range []string{
			"CONNECT dst.test:443 HTTP/1.1\r\n\r\n",
			"GET http://dst.test:443/secret-path HTTP/1.1\r\n\r\n",
		} {
			resp, body := roundTrip(t, p.addr, raw)
			if resp.StatusCode != tc.status || body != "shunt: "+strings.TrimPrefix(body, "shunt: ") ||
				!strings.Contains(body, tc.text) || !strings.Contains(body, "dst.test:443") {
				t.Errorf("%v, %q: got %d %q, want %d with %q", tc.err, raw, resp.StatusCode, body, tc.status, tc.text)
			}
			if strings.Contains(body, "secret") {
				t.Errorf("%v: the body tells the error's text: %q", tc.err, body)
			}
		}
		if strings.Contains(p.logs.String(), "secret-path") {
			t.Errorf("the log has the URL's path:\n%s", p.logs)
		}
	}
}

type wrapped struct{ error }

func (w wrapped) Unwrap() error { return w.error }

// upstreamOf starts a proxy whose Connect hands the accepted connection
// to the test, and sends raw to it; it returns the client's connection and
// the connection Connect got.
func upstreamOf(t *testing.T, raw string) (client net.Conn, up net.Conn, req Request) {
	t.Helper()
	got := make(chan net.Conn, 1)
	var r Request
	p := startProxy(t, &Server{Connect: func(_ context.Context, req Request, accept func() (net.Conn, error)) error {
		r = req
		c, err := accept()
		if err != nil {
			return err
		}
		if _, err := accept(); err == nil {
			t.Error("accept worked twice")
		}
		got <- c
		return nil
	}})
	client, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(client, raw)
	select {
	case up = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("Connect did not accept")
	}
	t.Cleanup(func() { up.Close() })
	up.SetDeadline(time.Now().Add(30 * time.Second))
	return client, up, r
}

func TestForwardRewritesHead(t *testing.T) {
	client, up, req := upstreamOf(t, "POST http://user:pw@name.test:8080/a%2Fb?q=1&r=%20 HTTP/1.1\r\n"+
		"Host: wrong.test\r\n"+
		"Proxy-Authorization: Basic c2VjcmV0\r\n"+
		"Proxy-Connection: keep-alive\r\n"+
		"Connection: keep-alive, X-Hop\r\n"+
		"X-Hop: 1\r\n"+
		"Keep-Alive: timeout=5\r\n"+
		"TE: trailers\r\n"+
		"Upgrade: websocket\r\n"+
		"X-Keep: yes\r\n"+
		"X-Keep: twice\r\n"+
		"Content-Length: 5\r\n"+
		"\r\nhello")
	if req.Method != "POST" || req.Host != "name.test" || req.Port != 8080 || req.Dst.IsValid() {
		t.Errorf("request %+v", req)
	}
	br := bufio.NewReader(up)
	fwd, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if fwd.RequestURI != "/a%2Fb?q=1&r=%20" || fwd.Host != "name.test:8080" || fwd.Proto != "HTTP/1.1" {
		t.Errorf("upstream got %s %s %s, Host %s", fwd.Method, fwd.RequestURI, fwd.Proto, fwd.Host)
	}
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop", "Keep-Alive", "Te", "Upgrade"} {
		if v, ok := fwd.Header[h]; ok {
			t.Errorf("hop-by-hop %s: %q forwarded", h, v)
		}
	}
	if got := fwd.Header.Values("X-Keep"); len(got) != 2 || got[0] != "yes" || got[1] != "twice" {
		t.Errorf("X-Keep = %q", got)
	}
	if got := fwd.Header.Get("Connection"); got != "close" {
		t.Errorf("Connection = %q", got)
	}
	body, _ := io.ReadAll(fwd.Body)
	if string(body) != "hello" {
		t.Errorf("body %q", body)
	}
	// The response goes to the client in our version, without its
	// hop-by-hop fields, and the client's connection stays open.
	io.WriteString(up, "HTTP/1.0 201 Created\r\nConnection: close, X-Up-Hop\r\nX-Up-Hop: 1\r\nX-Up: 2\r\nContent-Length: 2\r\n\r\nok")
	up.(closeWriter).CloseWrite()
	const want = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\nX-Up: 2\r\n\r\nok"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Errorf("client got %q, %v; want %q", got, err, want)
	}
	// Once the response is through, the upstream's reads end.
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the response: %q, %v", rest, err)
	}
	client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := client.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("the client's connection did not stay open: %d, %v", n, err)
	}
}

func TestForwardTargets(t *testing.T) {
	for _, tc := range []struct {
		line, wantURI, wantHost, wantProto string
		port                               uint16
		dst                                string
	}{
		{"GET http://name.test HTTP/1.1", "/", "name.test", "HTTP/1.1", 80, ""},
		{"GET http://name.test?x=1 HTTP/1.1", "/?x=1", "name.test", "HTTP/1.1", 80, ""},
		{"OPTIONS http://name.test:81 HTTP/1.1", "*", "name.test:81", "HTTP/1.1", 81, ""},
		{"GET HTTP://NAME.test/x HTTP/1.0", "/x", "NAME.test", "HTTP/1.0", 80, ""},
		{"DELETE http://[2001:db8::2]:8080/y HTTP/1.1", "/y", "[2001:db8::2]:8080", "HTTP/1.1", 8080, "[2001:db8::2]:8080"},
		{"GET http://192.0.2.1/ HTTP/1.1", "/", "192.0.2.1", "HTTP/1.1", 80, "192.0.2.1:80"},
	} {
		_, up, req := upstreamOf(t, tc.line+"\r\nHost: other\r\n\r\n")
		fwd, err := http.ReadRequest(bufio.NewReader(up))
		if err != nil {
			t.Fatalf("%s: %v", tc.line, err)
		}
		if fwd.RequestURI != tc.wantURI || fwd.Host != tc.wantHost || fwd.Proto != tc.wantProto {
			t.Errorf("%s: upstream got %s %s, Host %s", tc.line, fwd.RequestURI, fwd.Proto, fwd.Host)
		}
		if req.Port != tc.port || (tc.dst != "" && req.Dst != netip.MustParseAddrPort(tc.dst)) || (tc.dst == "") != (req.Host != "") {
			t.Errorf("%s: request %+v", tc.line, req)
		}
	}
}

func TestForwardChunked(t *testing.T) {
	_, up, _ := upstreamOf(t, "PUT http://name.test/ HTTP/1.1\r\n"+
		"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
		"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Sum: 3\r\n\r\n")
	br := bufio.NewReader(up)
	fwd, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(fwd.TransferEncoding) != 1 || fwd.TransferEncoding[0] != "chunked" || fwd.Header.Get("Trailer") != "" {
		t.Errorf("framing: TE %q, Trailer %q", fwd.TransferEncoding, fwd.Header.Get("Trailer"))
	}
	body, err := io.ReadAll(fwd.Body)
	if err != nil || string(body) != "hello world" {
		t.Errorf("body %q, %v", body, err)
	}
	if len(fwd.Trailer) != 0 {
		t.Errorf("trailers forwarded: %v", fwd.Trailer)
	}
}

// TestForwardStreams: the upstream reads the start of the body before the
// client has sent the rest (no buffering), and a client that breaks off
// mid-body makes the upstream's read fail rather than end.
func TestForwardStreams(t *testing.T) {
	client, up, _ := upstreamOf(t, "POST http://name.test/ HTTP/1.1\r\nContent-Length: 1000000\r\n\r\nfirst")
	br := bufio.NewReader(up)
	fwd, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(fwd.Body, got); err != nil || string(got) != "first" {
		t.Fatalf("the body's start: %q, %v", got, err)
	}
	io.WriteString(client, "second")
	got = make([]byte, 6)
	if _, err := io.ReadFull(fwd.Body, got); err != nil || string(got) != "second" {
		t.Fatalf("the body's next part: %q, %v", got, err)
	}
	client.Close()
	_, err = io.ReadAll(up)
	if err == nil || err == io.EOF {
		t.Errorf("a body cut short reads as a clean end (%v)", err)
	}
}

func TestForwardHTTP10KeepsLength(t *testing.T) {
	_, up, _ := upstreamOf(t, "POST http://name.test/ HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
	fwd, err := http.ReadRequest(bufio.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	if fwd.Proto != "HTTP/1.0" || fwd.Header.Get("Content-Length") != "0" {
		t.Errorf("upstream got %s, Content-Length %q", fwd.Proto, fwd.Header.Get("Content-Length"))
	}
}

func TestHandshakeTimeout(t *testing.T) {
	p := startProxy(t, &Server{HandshakeTimeout: 50 * time.Millisecond,
		Connect: func(context.Context, Request, func() (net.Conn, error)) error { return nil }})
	resp, _ := roundTrip(t, p.addr, "GET http://a.test/ HTTP/1.1\r\n")
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d", resp.StatusCode)
	}
	// A client that sends nothing is closed without a reply.
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Errorf("silent client got %q, %v", b, err)
	}
}

// TestServeEnds: cancelling Serve's context closes the listener and the
// connections still in their handshake, and Serve returns nil.
func TestServeEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Connect: func(context.Context, Request, func() (net.Conn, error)) error { return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET http://a.test/ HTTP/1.1\r\n") // and no more
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	// Closed without a reply: a FIN, or a reset for the unread input.
	if b, err := io.ReadAll(c); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
		t.Errorf("client got %q, %v", b, err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open")
	}
}

// TestConnectErrorAfterAccept: Connect failing after accept closes the
// client's connection; there is no second reply.
func TestConnectErrorAfterAccept(t *testing.T) {
	p := startProxy(t, &Server{Connect: func(_ context.Context, _ Request, accept func() (net.Conn, error)) error {
		if _, err := accept(); err != nil {
			return err
		}
		return refusal{RefusalFailed}
	}})
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "CONNECT a.test:1 HTTP/1.1\r\n\r\n")
	if b, err := io.ReadAll(c); err != nil || string(b) != connectOK {
		t.Errorf("client got %q, %v", b, err)
	}
}

func TestConnectWithoutAccept(t *testing.T) {
	p := startProxy(t, &Server{Connect: func(context.Context, Request, func() (net.Conn, error)) error { return nil }})
	resp, _ := roundTrip(t, p.addr, "CONNECT a.test:1 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d", resp.StatusCode)
	}
}
