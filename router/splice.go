package router

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/shunt-dev/shunt/internal/errs"
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

// pollReader is a connection that can be read without blocking and tells
// when there is something to read (netstack's flows). Join reads such a
// connection only when it has data, so a quiet direction parks no
// goroutine.
type pollReader interface {
	// TryRead reads what is there: (0, nil) when nothing is yet.
	TryRead(p []byte) (int, error)
	// NotifyReadable calls f (which must not block) whenever data, the
	// end of the stream or an error may have arrived; stop ends that.
	NotifyReadable(f func()) (stop func())
}

// Splice copies a→b and b→a until both directions end, then closes both
// connections. When one direction's source reaches EOF, the other side's
// write half is closed (half-close), so protocols that shut down writing and
// keep reading work. An error in either direction resets both (see abort).
// It returns the bytes copied each way and the errors, joined.
func Splice(a, b net.Conn) (aToB, bToA int64, err error) {
	done := make(chan struct{})
	Join(a, b, func(ab, ba int64, e error) {
		aToB, bToA, err = ab, ba, e
		close(done)
	})
	<-done
	return aToB, bToA, err
}

// Join is Splice without waiting: it starts the copy and returns, and done
// runs once both directions have ended and both connections are closed.
// When a is a pollReader, a→b runs only while a has data: an idle flow
// costs one goroutine (waiting on b), not two.
func Join(a, b net.Conn, done func(aToB, bToA int64, err error)) { startJoin(a, b, nil, done) }

// byteCounts are the bytes a join has copied each way so far. The copy
// adds to them as it writes (one atomic add per chunk), so they can be
// read while the flow runs; at the end they equal what done is given.
//
// writesAB and writesBA count each direction's writes twice, as one
// begins and as it returns: odd while a write is in progress. A count
// that stays odd and unchanged means a destination that takes nothing
// (memory.go): the flow's data waits in buffers meanwhile.
type byteCounts struct {
	aToB, bToA         atomic.Int64
	writesAB, writesBA atomic.Uint64
}

// startJoin is Join, counting into n (or into counts of its own when n
// is nil).
func startJoin(a, b net.Conn, n *byteCounts, done func(aToB, bToA int64, err error)) {
	go joinCarry(a, b, n, done)()
}

// joinCarry starts Join, counting as startJoin does, and returns the
// direction b → a for the caller to run on a goroutine (it returns when
// that direction ends). a → b is driven by a's readiness when a is a
// pollReader, else it runs on a goroutine of its own.
func joinCarry(a, b net.Conn, n *byteCounts, done func(aToB, bToA int64, err error)) (bToA func()) {
	j := &join{a: a, b: b, done: done}
	if n == nil {
		n = &j.own
	}
	j.left.Store(2)
	var p *pump
	if pr, ok := a.(pollReader); ok {
		p = &pump{src: pr, srcConn: a, dst: b, n: &n.aToB, writes: &n.writesAB, last: j.last, end: func(n int64, err error) {
			j.aToB, j.errAB = n, err
			j.finish()
		}}
		p.start()
	} else {
		go func() {
			j.aToB, j.errAB = copyHalf(b, a, &n.aToB, &n.writesAB, j.last)
			j.finish()
		}()
	}
	return func() {
		j.bToA, j.errBA = copyHalf(a, b, &n.bToA, &n.writesBA, j.last)
		if p != nil {
			// The pump may be idle on a connection this direction
			// just reset or half-closed: let it look.
			p.kick()
		}
		j.finish()
	}
}

// join is the state of one Join: each direction fills in its half, and the
// last to finish closes both connections and reports.
type join struct {
	a, b         net.Conn
	done         func(aToB, bToA int64, err error)
	left         atomic.Int32
	ended        atomic.Int32 // directions that reached their end (last)
	aToB, bToA   int64
	errAB, errBA error
	own          byteCounts // when the caller does not count
}

// last counts a direction's end, and reports whether it is the second:
// both connections are then closed as soon as it returns (finish), so its
// destination needs no half-close of its own. Close ends what the
// half-close would: for an SSH channel, CHANNEL_CLOSE implies the EOF
// (RFC 4254 5.3, and OpenSSH drains what it holds for the target first),
// and a socket whose input was read to its end sends its FIN on close.
// One SSH packet and one system call less for every flow that ends
// cleanly.
func (j *join) last() bool { return j.ended.Add(1) == 2 }

func (j *join) finish() {
	if j.left.Add(-1) != 0 {
		return
	}
	// Both directions are over: what Close says (an SSH channel answers
	// io.EOF when the peer closed first) changes nothing for the flow.
	j.a.Close()
	j.b.Close()
	j.done(j.aToB, j.bToA, errs.Join(j.errAB, j.errBA))
}

// Pump states: idle (no goroutine), running (a goroutine drains the
// source), again (running, and more may have arrived since it last looked),
// ended.
const (
	pumpIdle int32 = iota
	pumpRunning
	pumpAgain
	pumpEnded
)

// pump copies a pollReader to dst from a goroutine that exists only while
// the source has data: a readiness notification starts it, and it exits
// when a read finds nothing.
type pump struct {
	src     pollReader
	srcConn net.Conn
	dst     net.Conn
	end     func(n int64, err error)
	state   atomic.Int32
	stop    func()
	n       *atomic.Int64 // bytes written to dst
	writes  *atomic.Uint64
	last    func() bool // see join.last
}

func (p *pump) start() {
	// Running from the start: notifications that arrive while registering
	// only ask for another look, and the first drain below catches what
	// came before the registration.
	p.state.Store(pumpRunning)
	p.stop = p.src.NotifyReadable(p.kick)
	go p.run()
}

// kick asks for a drain; it never blocks (it runs on the stack's goroutine).
func (p *pump) kick() {
	for {
		switch s := p.state.Load(); s {
		case pumpIdle:
			if p.state.CompareAndSwap(pumpIdle, pumpRunning) {
				go p.run()
				return
			}
		case pumpRunning:
			if p.state.CompareAndSwap(pumpRunning, pumpAgain) {
				return
			}
		default: // pumpAgain, pumpEnded
			return
		}
	}
}

func (p *pump) run() {
	bp := bufPool.Get().(*[]byte)
	for {
		ended, err := p.drain(*bp)
		if ended {
			bufPool.Put(bp)
			p.state.Store(pumpEnded)
			p.stop()
			n, err := endHalf(p.dst, p.srcConn, p.n.Load(), err, p.last())
			p.end(n, err)
			return
		}
		if p.state.CompareAndSwap(pumpRunning, pumpIdle) {
			bufPool.Put(bp)
			return
		}
		p.state.Store(pumpRunning) // was pumpAgain: look once more
	}
}

// drain copies until the source has nothing more for now; ended reports
// the end of the direction (EOF or an error).
func (p *pump) drain(buf []byte) (ended bool, err error) {
	for {
		nr, rerr := p.src.TryRead(buf)
		if nr > 0 {
			p.writes.Add(1)
			nw, werr := p.dst.Write(buf[:nr])
			p.n.Add(int64(nw))
			p.writes.Add(1)
			if werr != nil {
				return true, werr
			}
			if nw != nr {
				return true, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return true, rerr
		}
		if nr == 0 {
			return false, nil
		}
	}
}

// copyHalf copies src to dst, adding what it writes to count and its
// writes to writes (see byteCounts). On EOF it closes dst's write half and
// src's read half (see endHalf); on an error it resets both connections,
// which ends the other direction too. last is join.last.
func copyHalf(dst, src net.Conn, count *atomic.Int64, writes *atomic.Uint64, last func() bool) (int64, error) {
	n, err := copyAdaptive(dst, src, count, writes)
	return endHalf(dst, src, n, err, last())
}

// endHalf ends the direction src→dst after n bytes: err nil means src
// reached EOF. last: the other direction has ended too, and both
// connections are closed next (join.last), so dst is not half-closed
// first.
func endHalf(dst, src net.Conn, n int64, err error, last bool) (int64, error) {
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
	switch cw, ok := dst.(closeWriter); {
	case last:
	case ok:
		err = cw.CloseWrite()
	default:
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
// most of the time, each blocked in a Read on its upstream: with a small
// buffer there, an idle flow pins 1 KiB, not 64.
const smallBufSize = 1 << 10

// copyAdaptive is io.Copy with a buffer that fits the traffic: reads start
// small, switch to a pooled 64 KiB buffer when a read fills the small one
// (bulk data: fewer, larger SSH packets), and give it back when reads turn
// short again (the flow went quiet). Each write is added to count as it
// is done, for readers while the copy runs, and each write to writes as it
// begins and as it returns (see byteCounts).
func copyAdaptive(dst io.Writer, src io.Reader, count *atomic.Int64, writes *atomic.Uint64) (int64, error) {
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
			writes.Add(1)
			nw, werr := dst.Write(buf[:nr])
			written += int64(nw)
			count.Add(int64(nw))
			writes.Add(1)
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
