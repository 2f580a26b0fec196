package httpproxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
)

// The optional capabilities a join looks for on a connection (router's
// splice does): the wrappers below offer them whatever the client's
// connection is, falling back to what the join would do without them.
type (
	closeWriter interface{ CloseWrite() error }
	closeReader interface{ CloseRead() error }
	aborter     interface{ Abort() }
)

// clientConn is the client's connection after the request head: reads
// come from r (what bufio already took from the client, then the client),
// everything else is the client's connection.
type clientConn struct {
	net.Conn
	r io.Reader
}

var (
	_ closeWriter = (*clientConn)(nil)
	_ closeReader = (*clientConn)(nil)
	_ aborter     = (*clientConn)(nil)
)

func (c *clientConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite ends the client's read side (the response or tunnel is
// complete); without half-close it closes the connection.
func (c *clientConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// CloseRead stops reading from the client where the connection can.
func (c *clientConn) CloseRead() error {
	if cr, ok := c.Conn.(closeReader); ok {
		return cr.CloseRead()
	}
	return nil
}

// Abort closes the client's connection with a reset where it can.
func (c *clientConn) Abort() { abortConn(c.Conn) }

// buffered is what br holds, copied: br's buffer is not used again.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return append([]byte(nil), b...)
}

// tunnelConn is the connection accept returns for CONNECT: the client's
// connection itself when the client sent nothing after the head (so the
// join sees the connection as it is), otherwise one whose reads return
// those bytes first.
func tunnelConn(c net.Conn, br *bufio.Reader) net.Conn {
	if br.Buffered() == 0 {
		return c
	}
	return &clientConn{Conn: c, r: &prefixReader{b: buffered(br), r: c}}
}

// prefixReader reads b, then r.
type prefixReader struct {
	b []byte
	r io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if len(p.b) > 0 {
		n := copy(b, p.b)
		p.b = p.b[n:]
		if len(p.b) == 0 {
			p.b = nil
		}
		return n, nil
	}
	return p.r.Read(b)
}

// chunkData is the most data one chunk of a re-chunked body carries: a
// read of a body yields at most this much.
const chunkData = 32 << 10

// chunkHead is the room before a chunk's data for its size line (up to 8
// hex digits and CRLF), and chunkBufSize a buffer for one chunk: size
// line, data, CRLF, and the last chunk ("0\r\n\r\n") after it.
const (
	chunkHead    = 10
	chunkBufSize = chunkHead + chunkData + 2 + 5
)

// frameChunk frames the n data bytes at buf[chunkHead:] as one chunk in
// place, followed by the last chunk (no trailers) when last is set, and
// returns the framed bytes (a slice of buf). n may be 0 only with last.
func frameChunk(buf []byte, n int, last bool) []byte {
	start, end := chunkHead, chunkHead
	if n > 0 {
		var digits [chunkHead]byte
		size := strconv.AppendInt(digits[:0], int64(n), 16)
		size = append(size, '\r', '\n')
		start = chunkHead - len(size)
		copy(buf[start:], size)
		end = chunkHead + n
		end += copy(buf[end:], "\r\n")
	}
	if last {
		end += copy(buf[end:], "0\r\n\r\n")
	}
	return buf[start:end]
}

// forwardReader is what the upstream reads for a forwarded request: the
// rewritten head, then the body, then whatever wait says (see
// Server.Connect). It runs in the reading goroutine only (the join's),
// starts none, and holds a buffer only for a chunked body.
type forwardReader struct {
	head []byte    // the head not yet read
	body io.Reader // the decoded body (net/http's reader over the client); nil once it ended
	// chunked re-frames the body in chunks of its own: net/http decodes
	// the client's chunks and the upstream gets them anew, so framing it
	// never checked cannot reach the upstream.
	chunked bool
	out     []byte // encoded bytes not yet read
	buf     []byte // out's storage
	// done, when set, is closed once the body has been read to its end:
	// from then on the client's connection is not read here (the server
	// reads the client's next request).
	done chan struct{}
	// wait is what a read after the body returns, once it returns: nil
	// means io.EOF at once.
	wait func() error
}

// newForwardReader is a forwardReader of head and body, with done made
// (and closed at once for a request without a body).
func newForwardReader(head []byte, body io.Reader, chunked bool) *forwardReader {
	r := &forwardReader{head: head, body: body, chunked: chunked, done: make(chan struct{})}
	if body == nil || body == http.NoBody {
		r.bodyEnded()
	}
	return r
}

func (r *forwardReader) bodyEnded() {
	r.body = nil
	if r.done != nil {
		close(r.done)
	}
}

func (r *forwardReader) Read(p []byte) (int, error) {
	for {
		switch {
		case len(p) == 0:
			return 0, nil
		case len(r.head) > 0:
			n := copy(p, r.head)
			r.head = r.head[n:]
			return n, nil
		case len(r.out) > 0:
			n := copy(p, r.out)
			r.out = r.out[n:]
			return n, nil
		case r.body != nil && !r.chunked:
			n, err := r.body.Read(p)
			if err == io.EOF {
				r.bodyEnded()
				err = nil
			}
			if n > 0 || err != nil {
				return n, err
			}
		case r.body != nil:
			if err := r.nextChunk(); err != nil {
				return 0, err
			}
		case r.wait != nil:
			if err := r.wait(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		default:
			return 0, io.EOF
		}
	}
}

// nextChunk reads the body once into a chunk of its own in out, and adds
// the last chunk (no trailers) when the body ends. A body that ends with
// an error (the client closed in the middle) returns it.
func (r *forwardReader) nextChunk() error {
	if r.buf == nil {
		r.buf = make([]byte, chunkBufSize)
	}
	n, err := r.body.Read(r.buf[chunkHead : chunkHead+chunkData])
	if err != nil && err != io.EOF {
		return err
	}
	r.out = frameChunk(r.buf, n, err == io.EOF)
	if err == io.EOF {
		r.bodyEnded()
	}
	return nil
}
