package router

import (
	"errors"
	"io"
	"net"
	"sync"
)

// spliceBufSize is the copy buffer of one direction. Larger reads mean
// fewer, larger SSH channel writes; buffers return to a pool between flows.
const spliceBufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, spliceBufSize); return &b }}

type closeWriter interface{ CloseWrite() error }

// aborter is a connection that can end with a reset instead of a clean
// close (netstack's flows).
type aborter interface{ Abort() }

// abort ends c with a reset where it can, so the peer learns the stream
// broke instead of seeing a clean end.
func abort(c net.Conn) {
	switch c := c.(type) {
	case aborter:
		c.Abort()
	case *net.TCPConn:
		c.SetLinger(0)
		c.Close()
	default:
		c.Close()
	}
}

type closeReader interface{ CloseRead() error }

// Splice copies a→b and b→a until both directions end, then closes both
// connections. When one direction's source reaches EOF, the other side's
// write half is closed (half-close), so protocols that shut down writing and
// keep reading work. An error in either direction resets both (see abort). It returns
// the bytes copied each way and the errors, joined.
func Splice(a, b net.Conn) (aToB, bToA int64, err error) {
	var wg sync.WaitGroup
	var errBA error
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errBA = copyHalf(a, b)
	}()
	var errAB error
	aToB, errAB = copyHalf(b, a)
	wg.Wait()
	// Both directions are over: what Close says (an SSH channel answers
	// io.EOF when the peer closed first) changes nothing for the flow.
	a.Close()
	b.Close()
	return aToB, bToA, errors.Join(errAB, errBA)
}

// copyHalf copies src to dst. On EOF it closes dst's write half and src's
// read half; on an error it resets both connections, which ends the other
// direction too.
func copyHalf(dst, src net.Conn) (int64, error) {
	n, err := copyAdaptive(dst, src)
	if closedLocally(err) {
		// The other direction closed a connection that cannot half-close:
		// that is its normal end, not an error.
		err = nil
	}
	if err != nil {
		// A broken stream on one side (an SSH connection lost, a reset)
		// must reach the other as a reset, not as a clean end.
		abort(dst)
		abort(src)
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		err = cw.CloseWrite()
	} else {
		err = dst.Close()
	}
	if cr, ok := src.(closeReader); ok {
		cr.CloseRead()
	}
	if closedLocally(err) {
		err = nil
	}
	return n, err
}

// smallBufSize is what a quiet direction reads with. Most flows are idle
// most of the time, each blocked in a Read: with a small buffer there, an
// idle flow does not pin 2 × 64 KiB.
const smallBufSize = 2 << 10

// copyAdaptive is io.Copy with a buffer that fits the traffic: reads start
// small, switch to a pooled 64 KiB buffer when a read fills the small one
// (bulk data: fewer, larger SSH packets), and give it back when reads turn
// short again (the flow went quiet).
func copyAdaptive(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallBufSize)
	var big *[]byte
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
	}()
	var written int64
	for {
		buf := small
		if big != nil {
			buf = *big
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			written += int64(nw)
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		}
		switch {
		case big == nil && nr == len(small):
			big = bufPool.Get().(*[]byte)
		case big != nil && nr < smallBufSize:
			bufPool.Put(big)
			big = nil
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

func closedLocally(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe)
}
