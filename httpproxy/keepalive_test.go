package httpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/router"
)

// rawOrigin is a Connect whose upstreams are in-process: each request's
// accepted connection is joined (router.Splice, as the engine's router
// does) to one end of a net.Pipe, and serve answers on the other end with
// raw bytes. It records the requests Connect saw.
type rawOrigin struct {
	serve func(host string, req *http.Request, body []byte, w io.Writer)
	wg    sync.WaitGroup
	mu    sync.Mutex
	seen  []Request
}

func newRawOrigin(t *testing.T, serve func(host string, req *http.Request, body []byte, w io.Writer)) *rawOrigin {
	o := &rawOrigin{serve: serve}
	t.Cleanup(o.wg.Wait)
	return o
}

func (o *rawOrigin) Connect(_ context.Context, req Request, accept func() (net.Conn, error)) error {
	o.mu.Lock()
	o.seen = append(o.seen, req)
	o.mu.Unlock()
	c, err := accept()
	if err != nil {
		return err
	}
	a, b := net.Pipe()
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		router.Splice(c, a)
	}()
	go func() {
		defer o.wg.Done()
		defer b.Close()
		r, err := http.ReadRequest(bufio.NewReader(b))
		if err != nil {
			return
		}
		if r.URL.Path == "/early" {
			// An answer before the body, and a close.
			io.WriteString(b, "HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		o.serve(req.Host, r, body, b)
	}()
	return nil
}

func (o *rawOrigin) requests() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.seen...)
}

// answers is a rawOrigin's serve that answers by path: /len, /chunked
// and /close (a body of each framing saying host, method and path and
// the request body), /empty/N (status N, no body), /cut (a Content-Length
// body cut short), /none (no response at all), /continue (a 100 before
// the response).
func answers(host string, req *http.Request, body []byte, w io.Writer) {
	text := fmt.Sprintf("%s %s %s %s", host, req.Method, req.URL.Path, body)
	switch p := req.URL.Path; {
	case p == "/len":
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(text), text)
	case p == "/chunked":
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n%x\r\n%s\r\n0\r\nX-T: 1\r\n\r\n", len(text), text)
	case p == "/close":
		fmt.Fprintf(w, "HTTP/1.0 200 OK\r\n\r\n%s", text)
	case strings.HasPrefix(p, "/empty/"):
		fmt.Fprintf(w, "HTTP/1.1 %s Empty\r\nContent-Length: 7\r\n\r\n", strings.TrimPrefix(p, "/empty/"))
	case p == "/cut":
		io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
	case p == "/continue":
		fmt.Fprintf(w, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(text), text)
	case p == "/none":
	}
}

// client is a connection to the proxy with a reader for its responses.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialProxy(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request with method, and its body.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(body)
}

// closed checks that the proxy closed the connection after the last
// response (a FIN, or a reset for unread input).
func (c *client) closed() {
	c.t.Helper()
	if b, err := c.br.ReadByte(); err == nil {
		c.t.Errorf("the connection is still open (read %q)", b)
	}
}

func get(method, url string, headers ...string) string {
	return method + " " + url + " HTTP/1.1\r\nHost: x\r\n" + strings.Join(headers, "") + "\r\n"
}

func TestKeepAliveFramings(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect})
	c := dialProxy(t, p.addr)
	for i, tc := range []struct{ req, want, te string }{
		{get("GET", "http://a.test/len"), "a.test GET /len ", ""},
		{get("GET", "http://a.test/chunked"), "a.test GET /chunked ", "chunked"},
		// Close-delimited: re-chunked for an HTTP/1.1 client, so the
		// connection stays.
		{get("GET", "http://b.test/close"), "b.test GET /close ", "chunked"},
		{"POST http://b.test:81/len HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody", "b.test POST /len body", ""},
		{"PUT http://a.test/chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", "a.test PUT /chunked ab", "chunked"},
		{get("GET", "http://a.test/continue", "Expect: 100-continue\r\n"), "a.test GET /continue ", ""},
	} {
		c.send(tc.req)
		resp, body := c.read("GET")
		if tc.req[:4] == "GET " && strings.Contains(tc.req, "continue") && resp.StatusCode == 100 {
			resp, body = c.read("GET")
		}
		if resp.StatusCode != 200 || body != tc.want || resp.Close || strings.Join(resp.TransferEncoding, ",") != tc.te || len(resp.Trailer) != 0 {
			t.Errorf("%d: %s: got %d %q (close %v, TE %q, trailer %v), want %q", i, tc.req, resp.StatusCode, body, resp.Close, resp.TransferEncoding, resp.Trailer, tc.want)
		}
	}
	reqs := o.requests()
	if len(reqs) != 6 {
		t.Fatalf("Connect saw %d requests, want one for each", len(reqs))
	}
	for i, want := range []string{"a.test:80", "a.test:80", "b.test:80", "b.test:81", "a.test:80", "a.test:80"} {
		if got := fmt.Sprintf("%s:%d", reqs[i].Host, reqs[i].Port); got != want || reqs[i].Client != reqs[0].Client {
			t.Errorf("request %d went to %s from %v, want %s from %v", i, got, reqs[i].Client, want, reqs[0].Client)
		}
	}
}

func TestKeepAlivePipelined(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect})
	c := dialProxy(t, p.addr)
	// All in one write: the proxy has them buffered together.
	c.send(get("GET", "http://a.test/chunked") + get("HEAD", "http://b.test/len") +
		get("GET", "http://a.test/empty/204") + get("GET", "http://b.test/empty/304") +
		"POST http://a.test/len HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz" + get("GET", "http://b.test/len"))
	for i, tc := range []struct {
		method string
		status int
		body   string
	}{
		{"GET", 200, "a.test GET /chunked "},
		{"HEAD", 200, ""},
		{"GET", 204, ""},
		{"GET", 304, ""},
		{"POST", 200, "a.test POST /len xyz"},
		{"GET", 200, "b.test GET /len "},
	} {
		resp, body := c.read(tc.method)
		if resp.StatusCode != tc.status || body != tc.body || resp.Close {
			t.Errorf("response %d: %d %q (close %v), want %d %q", i, resp.StatusCode, body, resp.Close, tc.status, tc.body)
		}
		if tc.method == "HEAD" && resp.ContentLength != int64(len("b.test HEAD /len ")) {
			t.Errorf("HEAD: Content-Length %d, want the GET's", resp.ContentLength)
		}
	}
}

func TestKeepAliveThenConnect(t *testing.T) {
	echo := echoServer(t)
	sp := newSplicer(t, "name.test")
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: func(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
		if req.Method == http.MethodConnect {
			return sp.Connect(ctx, req, accept)
		}
		return o.Connect(ctx, req, accept)
	}})
	c := dialProxy(t, p.addr)
	c.send(get("GET", "http://a.test/len") + "CONNECT name.test:" + itoa(echo.Port()) + " HTTP/1.1\r\n\r\nearly ")
	if _, body := c.read("GET"); body != "a.test GET /len " {
		t.Errorf("GET: %q", body)
	}
	want := connectOK + "early "
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != want {
		t.Fatalf("CONNECT: %q, %v; want %q", got, err, want)
	}
	c.send("later")
	c.c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(c.br); err != nil || string(rest) != "later" {
		t.Errorf("the tunnel: %q, %v", rest, err)
	}
}

func TestKeepAliveEnds(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect})
	for _, tc := range []struct {
		name, req string
		status    int
		body      string
		closes    bool
		conn      string // the response's Connection
	}{
		{"Connection: close", get("GET", "http://a.test/len", "Connection: close\r\n"), 200, "a.test GET /len ", true, "close"},
		{"HTTP/1.0", "GET http://a.test/len HTTP/1.0\r\n\r\n", 200, "a.test GET /len ", true, "close"},
		{"HTTP/1.0 keep-alive", "GET http://a.test/len HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, "a.test GET /len ", false, "keep-alive"},
		{"HTTP/1.0 Proxy-Connection", "GET http://a.test/len HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\n", 200, "a.test GET /len ", false, "keep-alive"},
		{"HTTP/1.0 close-delimited", "GET http://a.test/close HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, "a.test GET /close ", true, "close"},
		{"no response", get("GET", "http://a.test/none"), 502, "shunt: a.test:80 sent no valid response\n", true, "close"},
		{"not a proxy request", get("GET", "/"), 400, "", true, "close"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialProxy(t, p.addr)
			// A first request on the connection, kept.
			c.send(get("GET", "http://b.test/len"))
			if resp, body := c.read("GET"); body != "b.test GET /len " || resp.Close {
				t.Fatalf("first: %q, close %v", body, resp.Close)
			}
			c.send(tc.req)
			resp, body := c.read("GET")
			// (net/http takes "close" out of Connection into Close.)
			if resp.StatusCode != tc.status || (tc.body != "" && body != tc.body) || resp.Close != tc.closes ||
				(!tc.closes && resp.Header.Get("Connection") != tc.conn) {
				t.Errorf("got %d %q, close %v, Connection %q; want %d %q, %q", resp.StatusCode, body, resp.Close, resp.Header.Get("Connection"), tc.status, tc.body, tc.conn)
			}
			if tc.closes {
				c.closed()
				return
			}
			c.send(get("GET", "http://b.test/len"))
			if _, body := c.read("GET"); body != "b.test GET /len " {
				t.Errorf("after it: %q", body)
			}
		})
	}
}

// TestKeepAliveCut: a body the upstream breaks off ends the client's
// connection before the body's end.
func TestKeepAliveCut(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect})
	c := dialProxy(t, p.addr)
	c.send(get("GET", "http://a.test/cut"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err == nil || string(b) != "short" {
		t.Errorf("body %q, %v: want it cut short with an error", b, err)
	}
}

// TestKeepAliveEarlyAnswer: an upstream that answers before the body
// ends and takes no more: the client gets the answer, then a close (the
// rest of its body has nowhere to go).
func TestKeepAliveEarlyAnswer(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect})
	c := dialProxy(t, p.addr)
	const size = 100 << 10
	c.send(fmt.Sprintf("POST http://a.test/early HTTP/1.1\r\nContent-Length: %d\r\n\r\n", size))
	errc := make(chan error, 1)
	go func() { _, err := io.Copy(c.c, io.LimitReader(newPRNG(), size)); errc <- err }()
	if resp, _ := c.read("POST"); resp.StatusCode != 413 {
		t.Errorf("status %d", resp.StatusCode)
	}
	c.closed()
	<-errc
}

func TestKeepAliveIdle(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect, IdleTimeout: 20 * time.Millisecond})
	c := dialProxy(t, p.addr)
	c.send(get("GET", "http://a.test/len"))
	if _, body := c.read("GET"); body != "a.test GET /len " {
		t.Fatalf("%q", body)
	}
	// Nothing more: the proxy closes the connection without a reply.
	if b, err := io.ReadAll(c.br); err != nil || len(b) != 0 {
		t.Errorf("got %q, %v; want a close", b, err)
	}
}

// TestKeepAliveBadLater: a malformed request after good ones gets its
// error reply, and the connection closes.
func TestKeepAliveBadLater(t *testing.T) {
	o := newRawOrigin(t, answers)
	p := startProxy(t, &Server{Connect: o.Connect, MaxHeaderBytes: 2048})
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET http://a.test/len HTTP/1.1\r\nBad Header\r\n\r\n", 400},
		{"GET https://a.test/ HTTP/1.1\r\n\r\n", 400},
		{"GET http://a.test/ HTTP/1.1\r\nX: " + strings.Repeat("y", 4096) + "\r\n\r\n", 431},
	} {
		c := dialProxy(t, p.addr)
		// The bad request comes pipelined after a good one, with a
		// stray empty line between (which is skipped).
		c.send(get("GET", "http://a.test/len") + "\r\n" + tc.raw)
		if _, body := c.read("GET"); body != "a.test GET /len " {
			t.Errorf("%q", body)
		}
		if resp, _ := c.read("GET"); resp.StatusCode != tc.status || !resp.Close {
			t.Errorf("%q: got %d (close %v), want %d", tc.raw, resp.StatusCode, resp.Close, tc.status)
		}
		c.closed()
	}
}

// bulk is an HTTP server on loopback: /sum answers the body's size and
// sha256, /data/N sends N pseudo-random bytes (Content-Length, or chunked
// with ?chunked).
func bulk(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/sum", origin())
	mux.HandleFunc("/data", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(bulkSize))
		}
		io.Copy(w, io.LimitReader(newPRNG(), bulkSize))
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	return web
}

const bulkSize = 32 << 20

// prng is a deterministic byte stream.
type prng struct{ x uint32 }

func newPRNG() *prng { return &prng{x: 1} }

func (p *prng) Read(b []byte) (int, error) {
	for i := range b {
		p.x = p.x*1664525 + 1013904223
		b[i] = byte(p.x >> 24)
	}
	return len(b), nil
}

// TestKeepAliveBulk: 32 MiB each way, twice on one connection, with
// matching sha256.
func TestKeepAliveBulk(t *testing.T) {
	web := bulk(t)
	port := portOf(t, web.URL)
	sp := newSplicer(t, "bulk.test")
	p := startProxy(t, &Server{Connect: sp.Connect})
	h := sha256.New()
	io.Copy(h, io.LimitReader(newPRNG(), bulkSize))
	sum := fmt.Sprintf("%x", h.Sum(nil))

	c := dialProxy(t, p.addr)
	for _, chunked := range []bool{false, true} {
		// Upload: the request body streams as it is written.
		te := fmt.Sprintf("Content-Length: %d\r\n", bulkSize)
		var body io.Reader = io.LimitReader(newPRNG(), bulkSize)
		if chunked {
			te = "Transfer-Encoding: chunked\r\n"
			body = &chunker{r: body}
		}
		c.send("POST http://bulk.test:" + port + "/sum HTTP/1.1\r\n" + te + "\r\n")
		errc := make(chan error, 1)
		go func() { _, err := io.Copy(c.c, body); errc <- err }()
		_, got := c.read("POST")
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%d %s", bulkSize, sum); got != want {
			t.Errorf("upload (chunked %v): %q, want %q", chunked, got, want)
		}
		// Download.
		q := ""
		if chunked {
			q = "?chunked=1"
		}
		c.send(get("GET", "http://bulk.test:"+port+"/data"+q))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil || n != bulkSize || fmt.Sprintf("%x", h.Sum(nil)) != sum || resp.Close {
			t.Errorf("download (chunked %v): %d bytes, %v, close %v", chunked, n, err, resp.Close)
		}
	}
	reqs := sp.requests()
	if len(reqs) != 4 || reqs[3].Client != reqs[0].Client {
		t.Errorf("requests %+v: want 4 on one connection", reqs)
	}
}

// chunker frames r as a chunked body.
type chunker struct {
	r    io.Reader
	out  bytes.Buffer
	done bool
}

func (c *chunker) Read(p []byte) (int, error) {
	for c.out.Len() == 0 {
		if c.done {
			return 0, io.EOF
		}
		buf := make([]byte, 50000)
		n, err := c.r.Read(buf)
		if n > 0 {
			fmt.Fprintf(&c.out, "%x\r\n%s\r\n", n, buf[:n])
		}
		if errors.Is(err, io.EOF) {
			c.out.WriteString("0\r\n\r\n")
			c.done = true
		}
	}
	return c.out.Read(p)
}

// BenchmarkForwardDownload: one 32 MiB download through the proxy per
// operation, on a new client connection each time.
func BenchmarkForwardDownload(b *testing.B) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(bulkSize))
		buf := make([]byte, 64<<10)
		for n := 0; n < bulkSize; n += len(buf) {
			w.Write(buf)
		}
	}))
	defer web.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	s := &Server{Connect: func(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
		up, err := net.Dial("tcp", req.Dst.String())
		if err != nil {
			return err
		}
		c, err := accept()
		if err != nil {
			up.Close()
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); router.Splice(c, up) }()
		return nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done; wg.Wait() }()
	b.SetBytes(bulkSize)
	buf := make([]byte, 64<<10)
	for b.Loop() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		io.WriteString(c, "GET "+web.URL+"/ HTTP/1.1\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.CopyBuffer(io.Discard, resp.Body, buf); err != nil || n != bulkSize {
			b.Fatal(n, err)
		}
		c.Close()
	}
}
