package socks

import (
	"net"
)

// The capabilities a splice looks for on a connection (router's splice
// among them): half-close each way, and an abort that resets.
type (
	closeWriter interface{ CloseWrite() error }
	closeReader interface{ CloseRead() error }
	aborter     interface{ Abort() }
)

// prefixConn is a client connection with the bytes the client pipelined
// behind its request, which the handshake read: Read returns them first.
// It is used only when there are such bytes; otherwise accept returns the
// connection as it is.
type prefixConn struct {
	net.Conn
	pending []byte
}

// halfCloser is a prefixConn over a connection that half-closes (TCP,
// Unix): it keeps CloseWrite and CloseRead, so a splice still half-closes
// instead of closing.
type halfCloser struct {
	*prefixConn
}

var (
	_ net.Conn    = (*prefixConn)(nil)
	_ aborter     = (*prefixConn)(nil)
	_ closeWriter = halfCloser{}
	_ closeReader = halfCloser{}
	_ aborter     = halfCloser{}
)

// wrap is c with pending (copied: it aliases the session's buffer) read
// first, with c's half-close when it has one.
func wrap(c net.Conn, pending []byte) net.Conn {
	p := &prefixConn{Conn: c, pending: append([]byte(nil), pending...)}
	_, w := c.(closeWriter)
	_, r := c.(closeReader)
	if w && r {
		return halfCloser{p}
	}
	return p
}

// Read returns the pipelined bytes, then what the connection reads.
func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

// Abort ends the connection with a reset where it can (a TCP connection
// with no linger time, a connection that aborts itself), else closes it.
func (c *prefixConn) Abort() {
	switch u := c.Conn.(type) {
	case aborter:
		u.Abort()
	case *net.TCPConn:
		u.SetLinger(0)
		u.Close()
	default:
		u.Close()
	}
}

// CloseWrite closes the connection's write half.
func (c halfCloser) CloseWrite() error { return c.Conn.(closeWriter).CloseWrite() }

// CloseRead closes the connection's read half.
func (c halfCloser) CloseRead() error { return c.Conn.(closeReader).CloseRead() }
