package httpproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// exchange is the connection accept returns for a forwarded request: the
// join between it and the upstream carries one request and its response.
// The join reads the request from it (a forwardReader over the client's
// connection) and writes the upstream's response into a pipe, which the
// server reads with net/http's response parser and passes on to the
// client (relay). So the server knows where the response ends, and the
// client's connection stays the server's for the next request.
//
// The pipe is synchronous: a write returns once the server has taken the
// bytes, so nothing is buffered here beyond the server's one read, and an
// upstream faster than the client is slowed down as by a splice.
type exchange struct {
	client net.Conn // for the addresses only
	fr     *forwardReader
	pr     *io.PipeReader
	pw     *io.PipeWriter

	// end is closed by finish: the response is over (or broken off, see
	// endErr), and reads after the request's body return.
	end     chan struct{}
	endOnce sync.Once
	endErr  error
	// closed is closed by Close or Abort (the join is over).
	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ net.Conn    = (*exchange)(nil)
	_ closeWriter = (*exchange)(nil)
	_ closeReader = (*exchange)(nil)
	_ aborter     = (*exchange)(nil)
)

// errUpstreamBroken is what the server's reads of the response get when
// the join aborts (the upstream reset, or the request's body broke off).
var errUpstreamBroken = errors.New("http proxy: the flow to the upstream broke")

func newExchange(client net.Conn, fr *forwardReader) *exchange {
	pr, pw := io.Pipe()
	x := &exchange{client: client, fr: fr, pr: pr, pw: pw,
		end: make(chan struct{}), closed: make(chan struct{})}
	fr.wait = x.waitEnd
	return x
}

// waitEnd is the forwardReader's read after the body: it waits until the
// response has been passed on (the upstream sees no half-close while the
// client waits for the response: some servers take one as an abort).
func (x *exchange) waitEnd() error {
	select {
	case <-x.end:
		return x.endErr
	case <-x.closed:
		return net.ErrClosed
	}
}

// finish ends the exchange from the server's side: err nil means the
// response was passed on (the upstream then reads EOF, and more bytes it
// sends end its direction as a closed pipe does, cleanly); an error ends
// both directions with it, so the join resets the upstream.
func (x *exchange) finish(err error) {
	x.endOnce.Do(func() {
		x.endErr = err
		close(x.end)
		x.pr.CloseWithError(err)
	})
}

func (x *exchange) Read(p []byte) (int, error)  { return x.fr.Read(p) }
func (x *exchange) Write(p []byte) (int, error) { return x.pw.Write(p) }

// CloseWrite is the upstream's end of its response.
func (x *exchange) CloseWrite() error { return x.pw.Close() }

// CloseRead changes nothing: the request's reader ends by itself.
func (x *exchange) CloseRead() error { return nil }

// Close is the join's end: a response cut short reads as one.
func (x *exchange) Close() error {
	x.closeOnce.Do(func() {
		x.pw.CloseWithError(io.ErrUnexpectedEOF)
		close(x.closed)
	})
	return nil
}

// Abort is the join ending with an error.
func (x *exchange) Abort() {
	x.pw.CloseWithError(errUpstreamBroken)
	x.Close()
}

func (x *exchange) LocalAddr() net.Addr  { return x.client.LocalAddr() }
func (x *exchange) RemoteAddr() net.Addr { return x.client.RemoteAddr() }

// The exchange has no deadlines: its ends are the client's connection
// (whose deadlines are the server's) and the server's reads.
func (x *exchange) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (x *exchange) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (x *exchange) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
