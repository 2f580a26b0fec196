// Package httpproxy is an HTTP proxy server (shunt's http_proxy_listen),
// for applications that know only HTTPS_PROXY and HTTP_PROXY. It reads
// a client's request heads and hands each destination to its Connect
// handler, which decides and opens the upstream; the package
// knows nothing of shunt's rules or tunnels.
//
// Two kinds of request are served:
//
//   - CONNECT host:port (authority form; an IPv6 literal in brackets).
//     When Connect accepts, the client gets "HTTP/1.1 200 Connection
//     established" and its connection becomes a raw byte stream to the
//     destination; bytes the client sent after the request head are the
//     stream's first bytes.
//
//   - Plain forwarding of an absolute-form request, any method:
//     "GET http://host[:port]/path HTTP/1.1" (port 80 when none is given).
//     The upstream is opened as for CONNECT; the request goes to it in
//     origin form ("GET /path HTTP/1.1") with its Host header set to the
//     URL's authority, without hop-by-hop headers and with
//     "Connection: close". The server reads the upstream's response (with
//     net/http's parser, which knows where it ends) and passes it on to
//     the client as it arrives: status line as HTTP/1.1, end-to-end
//     headers, the body re-framed (Content-Length as sent; chunked,
//     re-chunked; until the close, chunked for an HTTP/1.1 client).
//     Nothing is buffered beyond one read. https:// URLs in absolute form
//     are refused (400): clients use CONNECT for those.
//
// Plain forwarding keeps the client's connection (HTTP/1.1 keep-alive, or
// HTTP/1.0 with "Connection: keep-alive"): after a response the server
// reads the client's next request, pipelined requests are answered in
// order, and a CONNECT after them turns the connection into its tunnel.
// Each request is decided on its own: Connect is called for each, with
// its own destination, and each opens an upstream of its own, closed after
// its response (an upstream is never reused, so no request can reach a
// destination its own decision did not open). The client's connection
// closes after a response when the client asks for it ("Connection:
// close", HTTP/1.0 without keep-alive), when the response's end is its
// upstream's close and the client speaks HTTP/1.0, after an error reply,
// when the request's body was not read to its end, or after IdleTimeout
// without a new request. A body the upstream breaks off ends the client's
// connection with a reset, since its head has already gone.
// Upgrade (websockets) is not forwarded: the Upgrade header is dropped
// with the other hop-by-hop headers, so the upstream answers the request
// as a plain one.
//
// A host name is never looked up here: Request carries it as Host and
// Port for the handler to open by name (shunt opens it on the SSH
// server's side); only an IP literal becomes Request.Dst.
//
// The proxy asks for no credentials: Proxy-Authorization is dropped and
// never logged. Listener access (loopback, allow_from) is the caller's.
package httpproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Defaults for the Server fields left zero.
const (
	// DefaultHandshakeTimeout bounds the time a client may take to send
	// its request head.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultMaxHeaderBytes bounds a request head (request line and
	// header fields): more is refused with 431.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultIdleTimeout bounds the wait for a client's next request
	// on a kept connection.
	DefaultIdleTimeout = 2 * time.Minute
)

// Refusal is why Connect refused a request, in the terms the client gets
// as a status code. The socks package has the same type: the engine maps
// its own errors to both.
type Refusal int

const (
	// RefusalFailed is anything else: 502 Bad Gateway.
	RefusalFailed Refusal = iota
	// RefusalBlocked is a rule or policy blocking the flow: 403 Forbidden.
	RefusalBlocked
	// RefusalRefused is the far side refusing the connection: 502.
	RefusalRefused
	// RefusalUnreachable is a destination that cannot be reached (no
	// route, no such host): 502.
	RefusalUnreachable
	// RefusalTimeout is a connection not made in time: 504 Gateway
	// Timeout.
	RefusalTimeout
)

// String names the refusal for logs.
func (r Refusal) String() string {
	switch r {
	case RefusalBlocked:
		return "blocked"
	case RefusalRefused:
		return "refused"
	case RefusalUnreachable:
		return "unreachable"
	case RefusalTimeout:
		return "timeout"
	}
	return "failed"
}

// Refuser is the optional method of an error returned by Connect that
// says which Refusal it is (found with errors.As). An error without it is
// RefusalFailed, except a context deadline, which is RefusalTimeout.
type Refuser interface{ Refusal() Refusal }

// Request is one client's request for a destination.
type Request struct {
	// Method is the request's method: "CONNECT" for a tunnel, anything
	// else ("GET", "POST", ...) for a forwarded request.
	Method string
	// Client is the client's address, Local the listener's: the two ends
	// of the client's connection (zero when the connection's addresses
	// are not IP addresses).
	Client, Local netip.AddrPort
	// Dst is the destination when the client gave an IP address; it is
	// the zero AddrPort when the client gave a name.
	Dst netip.AddrPort
	// Host is the destination's name when the client gave one (never
	// resolved here, never an IP literal); empty when Dst is set.
	Host string
	// Port is the destination port, in either case (Dst's port when Dst
	// is set).
	Port uint16
}

// Server is an HTTP proxy. Its fields are read when a connection is
// served and must not change while it serves.
type Server struct {
	// Connect decides and opens the upstream for req. On success it calls
	// accept, which returns the client's connection, and joins the two
	// (copying both ways, half-closes included); it returns once the flow
	// is set up (nil) or refused (an error, see Refuser, answered with
	// 403, 502 or 504). accept must be called at most once, and only
	// while Connect runs.
	//
	// For CONNECT, accept first sends the client the 200 reply; the
	// connection it returns reads what the client sends after the
	// request head (bytes already buffered come first) and writes to the
	// client.
	//
	// For a forwarded request, Connect is called for each request on
	// the client's connection, and accept sends nothing: the connection
	// it returns is not the client's but one exchange of a request and
	// its response. Its reads return the rewritten request head (origin
	// form, hop-by-hop headers dropped, "Connection: close") followed by
	// the request's body as the client sends it (re-framed:
	// Content-Length or chunked, trailers dropped). After the body they
	// wait until the response has reached the client and then return
	// io.EOF: the upstream sees no half-close while the client still
	// waits for the response. A client that breaks off in the middle of
	// its body makes the read fail, so the join resets the upstream
	// instead of ending the request cleanly. Its writes are the
	// upstream's response, which the server reads and passes on; they
	// return once the server has taken the bytes, and fail with
	// io.ErrClosedPipe after the response's end (more bytes from the
	// upstream end that direction) or with another error when the server
	// broke the exchange off (the client went away). CloseWrite is the
	// response's end where the upstream closes; Close and Abort end the
	// exchange. It has no deadlines (os.ErrNoDeadline).
	//
	// Once accept has returned a connection it belongs to Connect and
	// the join; ServeConn closes it only if Connect then returns an
	// error.
	Connect func(ctx context.Context, req Request, accept func() (net.Conn, error)) error
	// Log gets a debug line for each refused or malformed request (never
	// a credential, a URL's path or a header value); nil discards.
	Log logrus.FieldLogger
	// HandshakeTimeout bounds reading the request head (and writing an
	// error reply); zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxHeaderBytes bounds the request head; zero means
	// DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// IdleTimeout bounds the wait for the next request on a kept
	// connection; zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
}

// Serve accepts connections on ln and serves each (ServeConn) in its own
// goroutine until ctx ends, then closes ln and returns nil once every
// connection it serves has been handed over (CONNECT) or closed. A client that
// misbehaves affects only its own connection. A temporary accept error
// (too many open files) is retried after a pause; any other error (ln
// closed by someone else) is returned, also after the connections end.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// EMFILE, ECONNABORTED and the like: wait, as net/http does.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log().WithError(err).Warnf("http proxy: accept failed; retrying in %v", pause)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		pause = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ServeConn(ctx, c)
		}()
	}
}

// ServeConn serves one client connection: it reads a request head,
// calls Connect, and for a forwarded request relays the response and
// goes on to the next request. It returns once the connection has closed
// or a CONNECT flow is set up or refused. It closes c unless Connect took
// it (see Connect); a malformed request gets its error reply (400, 431,
// 505) and is logged at debug level. When ctx ends, c is closed (a
// response being relayed is cut short) unless a CONNECT flow has it.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	h := s.newHandshake(ctx, c)
	if taken := h.serve(); !taken {
		c.Close()
	}
}

// log is s.Log, or a logger that discards. It is called only to log,
// which is rare (a refusal, a bad request), so the discarding logger is
// made when needed rather than kept in a global.
func (s *Server) log() logrus.FieldLogger {
	if s.Log != nil {
		return s.Log
	}
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return DefaultMaxHeaderBytes
}

// addrPort is a's address and port when it is an IP address.
func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
