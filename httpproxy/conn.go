package httpproxy

import (
	"bufio"
	"io"
	"net"
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
func (c *clientConn) Abort() {
	switch cc := c.Conn.(type) {
	case aborter:
		cc.Abort()
	case *net.TCPConn:
		cc.SetLinger(0)
		cc.Close()
	default:
		cc.Close()
	}
}

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
// read of the client's body yields at most this much.
const chunkData = 32 << 10

// forwardReader is what the upstream reads for a forwarded request: the
// rewritten head, then the body, then nothing until the client's stream
// ends (see Server.Connect). It runs in the reading goroutine only (the
// join's), starts none, and holds a buffer only for a chunked body.
type forwardReader struct {
	head []byte    // the head not yet read
	body io.Reader // the decoded body (net/http's reader over the client); nil once it ended
	// chunked re-frames the body in chunks of its own: net/http decodes
	// the client's chunks and the upstream gets them anew, so framing it
	// never checked cannot reach the upstream.
	chunked bool
	out     []byte // encoded bytes not yet read
	buf     []byte // out's storage
	// rest is the client's stream after the body: read and discarded
	// until it ends. onExtra is called once if it has bytes.
	rest    io.Reader
	onExtra func()
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
				r.body, err = nil, nil
			}
			if n > 0 || err != nil {
				return n, err
			}
		case r.body != nil:
			if err := r.nextChunk(); err != nil {
				return 0, err
			}
		default:
			n, err := r.rest.Read(p)
			if n > 0 && r.onExtra != nil {
				r.onExtra()
				r.onExtra = nil
			}
			if err != nil {
				return 0, err
			}
		}
	}
}

// nextChunk reads the body once into a chunk of its own in out, and adds
// the last chunk (no trailers) when the body ends. A body that ends with
// an error (the client closed in the middle) returns it.
func (r *forwardReader) nextChunk() error {
	const headRoom = 10 // up to 8 hex digits and CRLF
	if r.buf == nil {
		r.buf = make([]byte, headRoom+chunkData+2+5)
	}
	n, err := r.body.Read(r.buf[headRoom : headRoom+chunkData])
	if err != nil && err != io.EOF {
		return err
	}
	start, end := headRoom, headRoom
	if n > 0 {
		var digits [10]byte
		size := strconv.AppendInt(digits[:0], int64(n), 16)
		size = append(size, '\r', '\n')
		start = headRoom - len(size)
		copy(r.buf[start:], size)
		end = headRoom + n
		end += copy(r.buf[end:], "\r\n")
	}
	if err == io.EOF {
		r.body = nil
		end += copy(r.buf[end:], "0\r\n\r\n")
	}
	r.out = r.buf[start:end]
	return nil
}
