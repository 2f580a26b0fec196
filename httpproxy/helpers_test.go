package httpproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/router"
)

// refusal is a Connect error with a Refusal, and a text that must never
// reach the client.
type refusal struct{ kind Refusal }

func (r refusal) Error() string    { return "secret-engine-detail " + r.kind.String() }
func (r refusal) Refusal() Refusal { return r.kind }

// proxy is a Server listening on loopback for one test.
type proxy struct {
	addr string
	logs *syncBuffer
	srv  *Server
}

// startProxy serves s on 127.0.0.1 until the test ends; s.Log is set to a
// debug logger whose output the proxy keeps.
func startProxy(t *testing.T, s *Server) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	l := logrus.New()
	l.Out, l.Level = logs, logrus.DebugLevel
	s.Log = l
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &proxy{addr: ln.Addr().String(), logs: logs, srv: s}
}

// splicer is a Connect that maps names to loopback addresses (any name
// in names goes to 127.0.0.1 at the requested port), refuses the names in
// refuse with their Refusal, and joins the flows with router.Splice. It
// records the requests it saw.
type splicer struct {
	names  map[string]bool
	refuse map[string]Refusal
	wg     sync.WaitGroup
	mu     sync.Mutex
	seen   []Request
}

func newSplicer(t *testing.T, names ...string) *splicer {
	sp := &splicer{names: map[string]bool{}, refuse: map[string]Refusal{}}
	for _, n := range names {
		sp.names[n] = true
	}
	t.Cleanup(sp.wg.Wait)
	return sp
}

func (sp *splicer) Connect(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
	sp.mu.Lock()
	sp.seen = append(sp.seen, req)
	sp.mu.Unlock()
	if k, ok := sp.refuse[req.Host]; ok {
		return refusal{k}
	}
	var addr string
	switch {
	case req.Dst.IsValid():
		addr = req.Dst.String()
	case sp.names[req.Host]:
		addr = net.JoinHostPort("127.0.0.1", itoa(req.Port))
	default:
		return refusal{RefusalUnreachable}
	}
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return refusal{RefusalRefused}
	}
	c, err := accept()
	if err != nil {
		up.Close()
		return err
	}
	sp.wg.Add(1)
	go func() {
		defer sp.wg.Done()
		router.Splice(c, up)
	}()
	return nil
}

func (sp *splicer) requests() []Request {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return append([]Request(nil), sp.seen...)
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// roundTrip sends raw to the proxy and returns the response it gets (its
// body read in full), with the connection closed.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", raw, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
