// Package socks serves SOCKS5 (RFC 1928, with RFC 1929 username/password
// authentication), SOCKS4 and SOCKS4a clients, for shunt's socks_listen.
//
// It serves CONNECT only: BIND and UDP ASSOCIATE are answered "command not
// supported". The server takes the client through the handshake and hands
// the request to a Connect function, which decides, opens the upstream and
// joins the two; the package itself never dials.
//
// It never resolves a name: a domain name the client asks for (SOCKS5
// address type 3, SOCKS4a) is passed on as Request.Host and Port, to be
// matched by name and opened as name:port on the far side. No DNS look-up
// happens here.
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
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/internal/logs"
)

// DefaultHandshakeTimeout bounds a client's handshake when
// Server.HandshakeTimeout is not set.
const DefaultHandshakeTimeout = 10 * time.Second

// Server is a SOCKS server. Its fields are read-only once it serves; one
// Server may serve many listeners and connections at once.
type Server struct {
	// Connect decides and opens the upstream for req. On success it
	// calls accept, which sends the client the success reply and returns
	// the client's connection (with any bytes the client sent after its
	// request kept), and joins the two; it returns once the flow is set
	// up (nil) or refused (an error). accept must be called at most once,
	// and before Connect returns. Connect should return soon once ctx
	// ends: Serve waits for it.
	//
	// An error is answered with the reply its Refusal method names (see
	// Refusal; RefusalFailed when it has none) and the connection closes.
	// If Connect returns nil without calling accept (a bug in the
	// handler), the client gets "general failure". If it returns an
	// error after accept returned the connection, the server closes the
	// connection: the flow was not set up. The connection accept returns
	// belongs to Connect otherwise, to close when the flow ends.
	//
	// A nil Connect refuses every request.
	Connect func(ctx context.Context, req Request, accept func() (net.Conn, error)) error

	// Auth, when set, makes the server require RFC 1929 username and
	// password authentication: SOCKS5 clients are offered only that
	// method, and SOCKS4 clients, which cannot give a password, are
	// refused. Auth reports whether user may log in with password; it is
	// called from the connection's goroutine and must be safe for
	// concurrent use. When nil, no authentication is asked for.
	Auth func(user, password string) bool

	// Log receives a debug line for each client refused for what it sent
	// or for what Connect said; passwords never appear in it. Nil is
	// logrus's standard logger.
	Log logrus.FieldLogger

	// HandshakeTimeout bounds the time from the connection to the end of
	// the client's request (not Connect's time); DefaultHandshakeTimeout
	// when 0 or less.
	HandshakeTimeout time.Duration
}

// Request is what a client asks to connect to, and who asks.
type Request struct {
	// Version is 5 for SOCKS5, 4 for SOCKS4 and SOCKS4a.
	Version int
	// Client is the client's address, Local the listener address the
	// client connected to. Either is the zero value when the connection
	// does not have one (a net.Pipe).
	Client, Local netip.AddrPort
	// Dst is the destination when the client gave an address (IPv4-mapped
	// IPv6 addresses are unmapped). A domain name that is an IP address
	// literal ("192.0.2.1", "2001:db8::1") counts as an address: parsing
	// it is not a look-up.
	Dst netip.AddrPort
	// Host is the destination name when the client gave one, never
	// resolved here; Dst is then the zero value. Port is the destination
	// port in either case.
	Host string
	Port uint16
	// User is the user name that authenticated (with Server.Auth set);
	// empty otherwise. SOCKS4's user id is not a credential and is not
	// passed on.
	User string
}

// String is the destination as host:port, for logs.
func (r Request) String() string {
	if r.Host != "" {
		return net.JoinHostPort(r.Host, strconv.Itoa(int(r.Port)))
	}
	return r.Dst.String()
}

// Refusal is why Connect refused a request, which chooses the reply: an
// error returned by Connect names it with a method
//
//	Refusal() Refusal
//
// found by errors.As. The SOCKS5 replies (RFC 1928) are "connection
// refused" (5) for RefusalBlocked and RefusalRefused, "host unreachable"
// (4) for RefusalUnreachable and RefusalTimeout, "general failure" (1)
// for RefusalFailed and for errors without the method. SOCKS4 has one
// refusal, 0x5B, for all.
type Refusal int

// The refusals Connect's errors may name.
const (
	// RefusalFailed is any other failure.
	RefusalFailed Refusal = iota
	// RefusalBlocked is a flow a rule blocks, or policy refuses.
	RefusalBlocked
	// RefusalRefused is a connection the far side refused.
	RefusalRefused
	// RefusalUnreachable is a host or network that cannot be reached: no
	// route, no server that can connect.
	RefusalUnreachable
	// RefusalTimeout is a connection attempt that timed out.
	RefusalTimeout
)

// String names r.
func (r Refusal) String() string {
	switch r {
	case RefusalFailed:
		return "failed"
	case RefusalBlocked:
		return "blocked"
	case RefusalRefused:
		return "refused"
	case RefusalUnreachable:
		return "unreachable"
	case RefusalTimeout:
		return "timeout"
	}
	return fmt.Sprintf("Refusal(%d)", int(r))
}

// refuser is an error that says which reply it deserves.
type refuser interface{ Refusal() Refusal }

// refusalOf is err's Refusal, RefusalFailed when it names none.
func refusalOf(err error) Refusal {
	var r refuser
	if errors.As(err, &r) {
		return r.Refusal()
	}
	return RefusalFailed
}

// reply5 is the SOCKS5 reply code for r.
func reply5(r Refusal) byte {
	switch r {
	case RefusalBlocked, RefusalRefused:
		return rep5Refused
	case RefusalUnreachable, RefusalTimeout:
		return rep5Unreachable
	}
	return rep5Failure
}

// temporary is the accept error worth retrying (EMFILE and the like).
type temporary interface{ Temporary() bool }

// Serve accepts clients on ln and serves each (see ServeConn) in a
// goroutine of its own, until ctx ends (Serve then closes ln) or ln is
// closed. A client that misbehaves is dropped; the others are served on.
// Serve returns once the ServeConn calls it started have returned (their
// Connect calls included): ctx.Err() when ctx ended, nil when ln was
// closed, the accept error otherwise.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if t, ok := err.(temporary); ok && t.Temporary() {
				// Out of file descriptors, say: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log().WithError(err).Warnf("socks: accept failed, retrying in %v", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			return err
		}
		delay = 0
		wg.Go(func() { s.ServeConn(ctx, c) })
	}
}

func (s *Server) log() logrus.FieldLogger {
	if s.Log == nil {
		return logrus.StandardLogger()
	}
	return s.Log
}

// bufSize is a handshake's read buffer: any message whole (maxMessage),
// and what the client pipelined behind it.
const bufSize = 1024

const _ = uint(bufSize - maxMessage) // does not compile if a message does not fit

// bufPool holds the handshakes' read buffers between clients.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// aLongTimeAgo is a deadline in the past: it makes pending I/O fail now.
var aLongTimeAgo = time.Unix(1, 0)

// lingerTime bounds how long a refused client's remaining bytes are read
// and dropped after the refusal (see session.lingerClose).
const lingerTime = time.Second

// ServeConn serves the client on c to the end of its set-up: the
// handshake, then Connect. On failure it replies what the protocol has
// for it (when it has a reply) and closes c; on success c (wrapped, when
// the client pipelined bytes) belongs to Connect. It returns when Connect
// does, or when the client is refused. The handshake is bounded by
// HandshakeTimeout and by ctx.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	h := &session{s: s, c: c, buf: bufPool.Get().(*[bufSize]byte)}
	h.stopWatch = func() bool { return true }
	if ctx.Done() != nil {
		h.stopWatch = context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	}
	h.serve(ctx)
	h.stopWatch()
	h.mu.Lock()
	h.state = stateDone
	bufPool.Put(h.buf)
	h.buf = nil
	h.mu.Unlock()
}

// session is one client's handshake.
type session struct {
	s         *Server
	c         net.Conn
	stopWatch func() bool // stops the ctx watch; false if it has fired
	req       Request

	mu    sync.Mutex // held by accept, and by ServeConn to end the session
	state int
	buf   *[bufSize]byte // buf[r:w] is read and not yet parsed
	r, w  int
	out   [32]byte // replies are built here, not on the stack, which the write would make escape
}

// Session states.
const (
	stateOpen     = iota // the handshake, then Connect
	stateAccepted        // accept handed the connection over
	stateDone            // ServeConn returned: accept is too late
)

var (
	errAcceptTwice = errors.New("socks: accept called twice")
	errAcceptLate  = errors.New("socks: accept called after Connect returned")
)

func (h *session) serve(ctx context.Context) {
	s := h.s
	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	h.c.SetDeadline(time.Now().Add(timeout))
	h.req.Client = addrPort(h.c.RemoteAddr())
	h.req.Local = addrPort(h.c.LocalAddr())

	if err := h.fill(); err != nil {
		h.drop(err)
		return
	}
	var t target
	var err error
	switch h.buf[h.r] {
	case version5:
		h.req.Version = 5
		t, err = h.handshake5()
	case version4:
		h.req.Version = 4
		t, err = readMsg(h, parseRequest4)
		if err == nil && s.Auth != nil {
			err = errSOCKS4Auth
		}
	default:
		err = errVersion
	}
	if err != nil {
		h.drop(err)
		return
	}
	h.req.Port = t.port
	if len(t.host) > 0 {
		h.req.Host = string(t.host)
		if maybeIP(t.host) {
			if a, err := netip.ParseAddr(h.req.Host); err == nil && a.Zone() == "" {
				h.req.Dst, h.req.Host = netip.AddrPortFrom(a.Unmap(), t.port), ""
			}
		}
	} else {
		h.req.Dst = t.dst
	}
	// The request is in: Connect's time is its own to bound.
	h.c.SetDeadline(time.Time{})
	if ctx.Err() != nil {
		h.c.Close()
		return
	}

	if s.Connect == nil {
		err = errors.New("socks: server has no Connect")
	} else {
		err = s.Connect(ctx, h.req, h.accept)
	}
	h.mu.Lock()
	accepted := h.state == stateAccepted
	h.state = stateDone
	h.mu.Unlock()
	switch {
	case accepted && err != nil:
		h.debug(err).Debug("socks: Connect failed after accept; closing the client")
		h.c.Close()
	case accepted:
	case err == nil:
		h.s.log().WithField("client", h.req.Client).Errorf("socks: Connect for %v returned without accept or error (a bug); answering general failure", h.req)
		h.refuse(RefusalFailed)
	default:
		if logs.Enabled(s.log(), logrus.DebugLevel) {
			h.debug(err).WithField("refusal", refusalOf(err)).Debugf("socks: %v refused", h.req)
		}
		h.refuse(refusalOf(err))
	}
}

// handshake5 takes a SOCKS5 client through method selection and, when
// the server asks for it, authentication, and reads its request.
func (h *session) handshake5() (target, error) {
	g, err := readMsg(h, parseGreeting)
	if err != nil {
		return target{}, err
	}
	want := byte(methodNone)
	if h.s.Auth != nil {
		want = methodPassword
	}
	found := false
	for _, m := range g.methods {
		found = found || m == want
	}
	if !found {
		return target{}, errNoMethod
	}
	if err := h.write(append(h.out[:0], version5, want)); err != nil {
		return target{}, err
	}
	if h.s.Auth != nil {
		a, err := readMsg(h, parseAuth)
		if err != nil {
			return target{}, err
		}
		user := string(a.user)
		if !h.s.Auth(user, string(a.pass)) {
			h.req.User = user // for the log line
			return target{}, errAuthRejected
		}
		if err := h.write(append(h.out[:0], authVersion, authOK)); err != nil {
			return target{}, err
		}
		h.req.User = user
	}
	return readMsg(h, parseRequest5)
}

// readMsg parses the next message with parse, reading from the client
// until it is whole.
func readMsg[T any](h *session, parse func([]byte) (T, int, error)) (T, error) {
	for {
		m, n, err := parse(h.buf[h.r:h.w])
		if err != errShort {
			if err == nil {
				h.r += n
			}
			return m, err
		}
		if err := h.fill(); err != nil {
			return m, err
		}
	}
}

var errTooLong = errors.New("socks: message longer than any the protocol has")

// fill reads more of what the client sent.
func (h *session) fill() error {
	if h.w == len(h.buf) {
		if h.r == 0 {
			return errTooLong // cannot happen: the buffer holds any message
		}
		h.w = copy(h.buf[:], h.buf[h.r:h.w])
		h.r = 0
	}
	n, err := h.c.Read(h.buf[h.w:])
	h.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

func (h *session) write(b []byte) error {
	_, err := h.c.Write(b)
	return err
}

// accept is Connect's accept: the success reply, and the connection.
func (h *session) accept() (net.Conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.state {
	case stateAccepted:
		return nil, errAcceptTwice
	case stateDone:
		return nil, errAcceptLate
	}
	if !h.stopWatch() {
		return nil, errors.New("socks: the server is shutting down")
	}
	var reply []byte
	if h.req.Version == 5 {
		reply = appendReply5(h.out[:0], rep5OK, h.req.Local)
	} else {
		reply = appendReply4(h.out[:0], rep4OK, h.req.Local)
	}
	if err := h.write(reply); err != nil {
		return nil, err
	}
	h.state = stateAccepted
	if h.r == h.w {
		return h.c, nil
	}
	return wrap(h.c, h.buf[h.r:h.w]), nil
}

// drop ends a handshake that failed on err: the reply the protocol has
// for it, if any, a debug line, and the close.
func (h *session) drop(err error) {
	if logs.Enabled(h.s.log(), logrus.DebugLevel) {
		h.debug(err).Debug("socks: handshake failed")
	}
	var pe *protoError
	if !errors.As(err, &pe) || pe.step == stepNone {
		// The client is gone, slow, or speaks another protocol.
		h.c.Close()
		return
	}
	var reply []byte
	switch {
	case pe.step == stepMethod:
		reply = append(h.out[:0], version5, pe.rep)
	case pe.step == stepAuth:
		reply = append(h.out[:0], authVersion, pe.rep)
	case h.req.Version == 4:
		reply = appendReply4(h.out[:0], pe.rep, netip.AddrPort{})
	default:
		reply = appendReply5(h.out[:0], pe.rep, netip.AddrPort{})
	}
	h.lingerClose(reply)
}

// refuse answers a request Connect refused, and closes.
func (h *session) refuse(r Refusal) {
	var reply []byte
	if h.req.Version == 5 {
		reply = appendReply5(h.out[:0], reply5(r), netip.AddrPort{})
	} else {
		reply = appendReply4(h.out[:0], rep4Failed, netip.AddrPort{})
	}
	h.lingerClose(reply)
}

// lingerClose sends reply and closes gently: closing a socket with unread
// bytes (a client that pipelined, one that sent too much) sends a reset,
// which can overtake the reply and lose it. So the write side closes
// first, and what the client still sends is read and dropped, for up to
// lingerTime, before the close.
func (h *session) lingerClose(reply []byte) {
	h.c.SetWriteDeadline(time.Now().Add(lingerTime))
	if h.write(reply) == nil {
		if cw, ok := h.c.(closeWriter); ok && cw.CloseWrite() == nil {
			h.c.SetReadDeadline(time.Now().Add(lingerTime))
			for n := 0; n < 64<<10; {
				m, err := h.c.Read(h.buf[:])
				n += m
				if err != nil {
					break
				}
			}
		}
	}
	h.c.Close()
}

// debug is a log entry about this client; the password is never in it.
func (h *session) debug(err error) *logrus.Entry {
	f := logrus.Fields{"client": h.req.Client}
	if h.req.User != "" {
		f["user"] = h.req.User
	}
	return h.s.log().WithFields(f).WithError(err)
}

// maybeIP tells whether name may be an IP address literal: IPv4 starts
// with a digit, IPv6 has a colon. It spares names ParseAddr's error, which
// allocates.
func maybeIP(name []byte) bool {
	return name[0] >= '0' && name[0] <= '9' || bytes.IndexByte(name, ':') >= 0
}

// addrPort is a's address and port, the zero value when it has none.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return ap
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
