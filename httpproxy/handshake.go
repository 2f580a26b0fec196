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

// handshake is one client connection until its flow is set up or refused.
type handshake struct {
	s   *Server
	ctx context.Context
	c   net.Conn
	req Request
	tgt target
}

func (s *Server) newHandshake(ctx context.Context, c net.Conn) *handshake {
	return &handshake{s: s, ctx: ctx, c: c, req: Request{
		Client: addrPort(c.RemoteAddr()),
		Local:  addrPort(c.LocalAddr()),
	}}
}

// serve reads the request, calls Connect and answers errors; taken says
// Connect took the connection (the caller must not close it).
func (h *handshake) serve() (taken bool) {
	s, c := h.s, h.c
	timeout := s.handshakeTimeout()
	c.SetDeadline(time.Now().Add(timeout))
	// ctx ending while the head is read (or an error reply lingers) wakes
	// the blocked read; accept stops this before handing c over.
	stopWake := context.AfterFunc(h.ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stopWake()

	maxBytes := s.maxHeaderBytes()
	lim := &headLimit{r: c, max: int64(maxBytes) + bufSize}
	br := bufio.NewReaderSize(lim, bufSize)
	req, err := readHead(br, lim, maxBytes)
	if h.ctx.Err() != nil {
		return false
	}
	if err != nil {
		h.fail(err, nil)
		return false
	}
	lim.max = 0 // the head is read: the body and tunnel are not limited
	h.req.Method = req.Method
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

	called, handed := false, false
	accept := func() (net.Conn, error) {
		if called {
			return nil, errors.New("http proxy: accept called twice")
		}
		called = true
		if !stopWake() {
			return nil, h.ctx.Err()
		}
		if err := c.SetDeadline(time.Time{}); err != nil {
			return nil, err
		}
		var conn net.Conn
		if h.tgt.connect {
			c.SetWriteDeadline(time.Now().Add(timeout))
			if _, err := io.WriteString(c, connectOK); err != nil {
				return nil, err
			}
			c.SetWriteDeadline(time.Time{})
			conn = tunnelConn(c, br)
		} else {
			head, chunked := upstreamHead(req, h.tgt)
			conn = &clientConn{Conn: c, r: &forwardReader{
				head: head, body: req.Body, chunked: chunked, rest: br,
				onExtra: func() {
					h.log().Debug("http proxy: client sent more after its request; one request per connection is served, the rest is discarded")
				},
			}}
		}
		handed = true
		return conn, nil
	}
	err = s.Connect(h.ctx, h.req, accept)
	switch {
	case err == nil && handed:
		return true
	case err == nil:
		h.fail(errors.New("http proxy: Connect returned without accepting or an error"), nil)
	case called:
		// The client had its reply (or the upstream its request): only
		// the log can tell.
		h.log().WithError(err).Debug("http proxy: flow failed after it was accepted")
	default:
		h.fail(nil, err)
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
	if h.ctx.Err() != nil {
		return
	}
	c := h.c
	c.SetWriteDeadline(time.Now().Add(h.s.handshakeTimeout()))
	if _, err := c.Write(reply(status, text)); err != nil {
		return
	}
	// Linger (see lingerBytes): half-close, then read until the client
	// closes or the limits are reached.
	if cw, ok := c.(closeWriter); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, c, lingerBytes)
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
