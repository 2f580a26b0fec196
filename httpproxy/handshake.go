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
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// connectOK is CONNECT's success reply.
const connectOK = "HTTP/1.1 200 Connection established\r\n\r\n"

// lingerBytes and lingerTime bound what an error reply waits for: the
// client may still be sending (a body, a pipelined request), and closing
// a socket with unread input sends a reset that can overtake the reply.
// So the server half-closes and reads what comes, up to these, before it
// closes (as net/http's server does).
const (
	lingerBytes = 256 << 10
	lingerTime  = time.Second
)

// handshake is one client connection until its flow is set up or refused
// (CONNECT), or until it closes (forwarded requests, one after another).
type handshake struct {
	s   *Server
	ctx context.Context
	c   net.Conn
	req Request
	tgt target

	lim      *headLimit
	br       *bufio.Reader
	stopWake func() bool
}

// bodyBufs are the buffers (chunkBufSize) responses are relayed with,
// taken for one response and given back after it: a kept connection that
// idles holds none.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, chunkBufSize); return &b }}

func (s *Server) newHandshake(ctx context.Context, c net.Conn) *handshake {
	return &handshake{s: s, ctx: ctx, c: c, req: Request{
		Client: addrPort(c.RemoteAddr()),
		Local:  addrPort(c.LocalAddr()),
	}}
}

// setDeadline sets c's deadline, unless ctx has ended: then the deadline
// stays in the past, where ctx's wake put it (it may have run first).
func (h *handshake) setDeadline(t time.Time) {
	h.c.SetDeadline(t)
	if h.ctx.Err() != nil {
		h.c.SetDeadline(time.Unix(1, 0))
	}
}

// serve reads requests, calls Connect for each and answers errors; taken
// says Connect took the connection (the caller must not close it).
func (h *handshake) serve() (taken bool) {
	s, c := h.s, h.c
	// ctx ending while a head is read, a response relayed or the client
	// idles (or an error reply lingers) wakes the blocked read or write;
	// CONNECT's accept stops this before handing c over.
	h.stopWake = context.AfterFunc(h.ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer h.stopWake()

	maxBytes := s.maxHeaderBytes()
	h.lim = &headLimit{r: c}
	h.br = bufio.NewReaderSize(h.lim, bufSize)
	for first := true; ; first = false {
		if !first && !h.awaitNext() {
			return false
		}
		h.setDeadline(time.Now().Add(s.handshakeTimeout()))
		// Bytes already buffered (a pipelined request) count towards
		// this head, as readHead reckons.
		h.lim.n, h.lim.max, h.lim.over = int64(h.br.Buffered()), int64(maxBytes)+bufSize, false
		req, err := readHead(h.br, h.lim, maxBytes)
		if h.ctx.Err() != nil {
			return false
		}
		if err != nil {
			h.fail(err, nil)
			return false
		}
		h.lim.max = 0 // the head is read: the body and tunnel are not limited
		h.req.Method, h.req.Dst, h.req.Host, h.req.Port = req.Method, netip.AddrPort{}, "", 0
		local := ""
		if h.req.Local.IsValid() {
			local = h.req.Local.String()
		}
		h.tgt, err = classify(req, local)
		if err != nil {
			h.fail(err, nil)
			return false
		}
		h.req.Port = h.tgt.port
		if h.tgt.addr.IsValid() {
			h.req.Dst = netip.AddrPortFrom(h.tgt.addr, h.tgt.port)
		} else {
			h.req.Host = h.tgt.host
		}
		if h.tgt.connect {
			return h.connect()
		}
		if !h.forward(req) {
			return false
		}
	}
}

// awaitNext waits, up to the idle timeout, for the client's next request
// after a forwarded one, and reports whether one is coming. Up to four
// empty lines before it are skipped (RFC 9112 section 2.2, as net/http's
// server does).
func (h *handshake) awaitNext() bool {
	h.setDeadline(time.Now().Add(h.s.idleTimeout()))
	for skipped := 0; ; skipped++ {
		b, err := h.br.Peek(1)
		if err != nil {
			if h.ctx.Err() == nil {
				h.log().WithError(err).Debug("http proxy: client closed or idle after its last request")
			}
			return false
		}
		if (b[0] != '\r' && b[0] != '\n') || skipped == 4 {
			return true
		}
		h.br.Discard(1)
	}
}

// connect serves a CONNECT request: Connect takes the connection.
func (h *handshake) connect() (taken bool) {
	c := h.c
	called, handed := false, false
	accept := func() (net.Conn, error) {
		if called {
			return nil, errors.New("http proxy: accept called twice")
		}
		called = true
		if !h.stopWake() {
			return nil, h.ctx.Err()
		}
		if err := c.SetDeadline(time.Time{}); err != nil {
			return nil, err
		}
		c.SetWriteDeadline(time.Now().Add(h.s.handshakeTimeout()))
		if _, err := io.WriteString(c, connectOK); err != nil {
			return nil, err
		}
		c.SetWriteDeadline(time.Time{})
		handed = true
		return tunnelConn(c, h.br), nil
	}
	err := h.s.Connect(h.ctx, h.req, accept)
	switch {
	case err == nil && handed:
		return true
	case err == nil:
		h.fail(errors.New("http proxy: Connect returned without accepting or an error"), nil)
	case called:
		// The client had its reply: only the log can tell.
		h.log().WithError(err).Debug("http proxy: flow failed after it was accepted")
	default:
		h.fail(nil, err)
	}
	return false
}

// forward serves a forwarded request: Connect joins the upstream to an
// exchange, whose response is relayed to the client here. It reports
// whether the client's connection goes on to its next request.
func (h *handshake) forward(req *http.Request) (keep bool) {
	head, chunked := upstreamHead(req, h.tgt)
	x := newExchange(h.c, newForwardReader(head, req.Body, chunked))
	called := false
	accept := func() (net.Conn, error) {
		if called {
			return nil, errors.New("http proxy: accept called twice")
		}
		called = true
		if err := h.ctx.Err(); err != nil {
			return nil, err
		}
		// No deadline while the request and response stream: a download
		// takes the time it takes (ctx's wake still ends it).
		h.setDeadline(time.Time{})
		return x, nil
	}
	err := h.s.Connect(h.ctx, h.req, accept)
	switch {
	case err == nil && called:
		return h.relay(req, x)
	case err == nil:
		h.fail(errors.New("http proxy: Connect returned without accepting or an error"), nil)
	case called:
		x.Close()
		h.log().WithError(err).Debug("http proxy: flow failed after it was accepted")
		h.fail(nil, err)
	default:
		h.fail(nil, err)
	}
	return false
}

// relay passes the upstream's response to req from x on to the client
// and reports whether the client's connection is kept for its next
// request: when the client wants it, the response's end is known without
// a close, and the request's body has been read to its end (so that the
// client's connection is read here alone).
func (h *handshake) relay(req *http.Request, x *exchange) (keep bool) {
	c := h.c
	ur := bufio.NewReaderSize(x.pr, bufSize)
	resp, err := readResponse(ur, c, req)
	if err != nil {
		x.finish(err)
		if h.ctx.Err() == nil {
			h.log().WithError(err).Debug("http proxy: no valid response from the upstream")
			h.replyAndClose(http.StatusBadGateway, "shunt: "+h.tgt.String()+" sent no valid response")
		}
		return false
	}
	head, mode, keep := responseHead(req, resp, clientKeepAlive(req))
	if _, err := c.Write(head); err != nil {
		x.finish(err)
		return false
	}
	buf := bodyBufs.Get().(*[]byte)
	err = relayBody(c, resp, mode, *buf)
	bodyBufs.Put(buf)
	if err != nil {
		x.finish(err)
		var be errBody
		if errors.As(err, &be) && h.ctx.Err() == nil {
			// The head has gone: a reset is how the client learns that
			// the body is cut short.
			h.log().WithError(err).Debug("http proxy: the upstream's response broke off")
			abortConn(c)
		}
		return false
	}
	x.finish(nil)
	if !h.bodyRead(x) {
		return false
	}
	if !keep {
		h.linger()
	}
	return keep
}

// bodyRead waits (up to the idle timeout) until the join has read the
// request's body to its end, for an upstream that answered before it had
// all of it: the client's connection can then serve the next request.
// False means the body was not read to its end.
func (h *handshake) bodyRead(x *exchange) bool {
	select {
	case <-x.fr.done:
		return true
	default:
	}
	t := time.NewTimer(h.s.idleTimeout())
	defer t.Stop()
	h.log().Debug("http proxy: the upstream answered before the request's body ended")
	select {
	case <-x.fr.done:
		return true
	case <-x.closed:
		// The join is over (the upstream took no more): nothing reads
		// the client now but linger, which keeps the rest of the body
		// from resetting the connection before the client has read the
		// response.
		h.log().Debug("http proxy: the request's body was not read to its end; closing the client's connection")
		h.linger()
	case <-t.C:
	case <-h.ctx.Done():
	}
	return false
}

// fail answers a request that is not served: a *replyError (or
// errNoRequest) from reading it, or else connectErr from Connect.
func (h *handshake) fail(err, connectErr error) {
	var status int
	var text string
	var re *replyError
	switch {
	case errors.Is(err, errNoRequest):
		h.log().Debug("http proxy: client closed without a request")
		return
	case errors.As(err, &re):
		status, text = re.status, re.text
		h.log().WithField("status", status).Debug("http proxy: bad request: " + text)
	case err != nil: // a broken handler
		status, text = http.StatusBadGateway, "shunt: could not connect to "+h.tgt.String()
		h.log().WithError(err).Warn("http proxy: " + err.Error())
	default:
		kind := refusalOf(connectErr)
		status, text = refusalReply(kind, h.tgt)
		h.log().WithError(connectErr).WithFields(logrus.Fields{"status": status, "refusal": kind}).
			Debug("http proxy: request refused")
	}
	h.replyAndClose(status, text)
}

// replyAndClose sends an error reply and lingers (the caller closes).
func (h *handshake) replyAndClose(status int, text string) {
	if h.ctx.Err() != nil {
		return
	}
	h.setDeadline(time.Now().Add(h.s.handshakeTimeout()))
	if _, err := h.c.Write(reply(status, text)); err != nil {
		return
	}
	h.linger()
}

// linger (see lingerBytes) half-closes the client's connection, then
// reads until the client closes or the limits are reached; the caller
// closes.
func (h *handshake) linger() {
	c := h.c
	if cw, ok := c.(closeWriter); ok && cw.CloseWrite() == nil {
		h.setDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, c, lingerBytes)
	}
}

// abortConn closes c with a reset where it can.
func abortConn(c net.Conn) {
	switch cc := c.(type) {
	case aborter:
		cc.Abort()
	case *net.TCPConn:
		cc.SetLinger(0)
		cc.Close()
	default:
		cc.Close()
	}
}

// refusalOf is the Refusal of a Connect error: its own, or a timeout for a
// deadline, or RefusalFailed.
func refusalOf(err error) Refusal {
	var r Refuser
	switch {
	case errors.As(err, &r):
		return r.Refusal()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return RefusalTimeout
	}
	return RefusalFailed
}

// log is the server's logger with the request's fields: addresses,
// method and destination host:port, never a path, header or credential.
func (h *handshake) log() logrus.FieldLogger {
	f := logrus.Fields{"client": h.req.Client, "via": h.req.Local}
	if h.req.Method != "" {
		f["method"] = h.req.Method
	}
	if h.tgt.port != 0 {
		f["dst"] = h.tgt.String()
	}
	return h.s.log().WithFields(f)
}
