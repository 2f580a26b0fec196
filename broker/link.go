package broker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

const (
	// connectTimeout bounds one connection attempt: TCP, proxy, key
	// exchange and authentication (time spent waiting on the user at a
	// prompt does not count).
	connectTimeout = 30 * time.Second
	backoffMin     = 1 * time.Second
	backoffMax     = 60 * time.Second
)

// link is one SSH connection of a profile, connected on demand.
type link struct {
	pool  *pool
	index int
	log   logrus.FieldLogger

	mu         sync.Mutex
	cur        *session  // nil while down
	connecting *attempt  // the attempt running
	lastErr    error     // why the last attempt failed; nil after a success
	failures   int       // consecutive failed attempts
	retryAt    time.Time // no attempt before this (backoff)
	flows      int       // channels open or being opened
	idle       *time.Timer
	backoff    *time.Timer // ends the backoff state, for Status
	asking     int         // prompts the running attempt waits on
	lost       bool        // the last connection was lost: the next one is a reconnect
	closed     bool

	// The state as published, and the server (host:port) connected to
	// or tried, and the way to it; guarded by pool.smu.
	st, server, route string
	// hostKey is the host key of the server logged in to (keyLabel),
	// guarded by pool.smu.
	hostKey string

	// Channels open, and the bytes they carried (an atomic add per Read
	// and Write of a channel).
	channels atomic.Int64
	traffic  traffic

	// What servers sent that nobody wanted, over all connections:
	// channel requests (refused) and stderr bytes (discarded).
	requestsRefused atomic.Uint64
	stderrDiscarded atomic.Uint64
	// Channels the servers opened (all refused), flows refused for the
	// profile's opens in flight, and this link's opens in flight now.
	channelOpensRefused atomic.Uint64
	opensRefused        atomic.Uint64
	opensPending        atomic.Int64
}

// attempt is one connection attempt; everyone waiting for it gets its
// result, even if the connection has gone again by the time they look.
type attempt struct {
	done chan struct{}
	s    *session
	err  error

	// waiters counts the callers of get waiting for the attempt; when the
	// last gives up, abandoned is closed (both guarded by link.mu).
	waiters   int
	abandoned chan struct{}
	gone      bool // abandoned is closed
	// withdrawn: a prompter withdrew a question because nobody waited
	// (see Question.Abandoned): not the server's failure.
	withdrawn atomic.Bool
}

// leave uncounts a waiter of a; the last one out abandons it.
func (l *link) leave(a *attempt) {
	l.mu.Lock()
	a.waiters--
	if a.waiters == 0 && !a.gone {
		a.gone = true
		close(a.abandoned)
	}
	l.mu.Unlock()
}

// session is one established SSH connection.
type session struct {
	client    *ssh.Client
	transport *watchedConn
	server    string
	// requests refuses the requests of every channel of the connection.
	requests requestSink
	// stderr: the server may send stderr data on channels (see
	// stderrMayArrive), so each channel gets a reader that discards it.
	stderr bool
	// opens counts the channel opens the server has not answered.
	opens pendingOpens

	endOnce sync.Once
	done    chan struct{} // closed when the connection has ended for us
	closed  chan struct{} // closed when x/crypto's Close has returned
}

func newSession(l *link, client *ssh.Client, transport *watchedConn, server string) *session {
	return &session{
		client:    client,
		transport: transport,
		server:    server,
		requests:  requestSink{log: l.log.WithField("server", server), declined: &l.requestsRefused},
		stderr:    stderrMayArrive(client.ServerVersion()),
		opens:     pendingOpens{profile: &l.pool.opensPending, link: &l.opensPending},
		done:      make(chan struct{}),
		closed:    make(chan struct{}),
	}
}

// end closes the connection without waiting for it: its socket at once
// (the server sees the end, every read and write on it fails), and
// x/crypto's Close in a goroutine of its own. A connection that x/crypto
// cannot unwind (its reader waiting on something that never comes) holds
// only that goroutine, never the caller: the keepalive that declared it
// dead, the idle timer, Close.
func (s *session) end() {
	s.endOnce.Do(func() {
		s.transport.failed.Store(true) // before any channel sees its EOF
		s.opens.end()
		close(s.done)
		go func() {
			s.client.Close()
			close(s.closed)
		}()
	})
}

// lost reports whether the connection under the session failed or was
// closed: a channel's EOF then means the connection died, not the peer's
// clean end of stream.
func (s *session) lost() bool { return s.transport.failed.Load() }

// watchedConn records the first failure of the transport under an SSH
// connection, read or write. x/crypto reads it in one goroutine; a read
// failure is recorded before the error reaches that goroutine, so before
// any channel sees EOF.
//
// It also reads ahead: x/crypto reads its transport through a 4 KiB
// buffer, two or three system calls for every 32 KiB SSH packet; one read
// here fetches up to readAhead bytes, several packets, at once.
type watchedConn struct {
	net.Conn
	failed atomic.Bool
	// lastRead is when the server last sent anything (UnixNano), as
	// read from the socket, not from the read-ahead buffer: any byte
	// proves the connection alive at the time it arrived.
	lastRead atomic.Int64
	r        *bufio.Reader
}

// readAhead is the transport's read buffer, per SSH connection.
const readAhead = 256 << 10

func newWatchedConn(c net.Conn) *watchedConn {
	w := &watchedConn{Conn: c}
	w.r = bufio.NewReaderSize(rawReader{c: c, lastRead: &w.lastRead}, readAhead)
	return w
}

// rawReader hides the connection's other methods from bufio, and records
// when bytes arrive.
type rawReader struct {
	c        net.Conn
	lastRead *atomic.Int64
}

func (r rawReader) Read(b []byte) (int, error) {
	n, err := r.c.Read(b)
	if n > 0 {
		r.lastRead.Store(time.Now().UnixNano())
	}
	if n < quickAckBelow {
		// Little arrived: the server may be holding its next small
		// packet for our ACK (see quickAck). A bulk stream is ACKed
		// every second segment anyway, and needs no system call more.
		quickAck(r.c)
	}
	return n, err
}

// quickAckBelow is the read size under which the ACK is sent at once.
const quickAckBelow = 16 << 10

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

// Write records a failed write too: a connection the server reset can
// fail a channel open's write before the reader sees the end, and that
// open is then retried on a fresh connection (link.dial), not refused.
func (c *watchedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil {
		c.failed.Store(true)
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.failed.Store(true)
	return c.Conn.Close()
}

func (l *link) load() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flows
}

func (l *link) addFlow() {
	l.mu.Lock()
	l.flows++
	if l.idle != nil {
		l.idle.Stop()
		l.idle = nil
	}
	l.mu.Unlock()
}

// removeFlow uncounts a flow; the last one out starts the idle timer.
func (l *link) removeFlow() {
	l.mu.Lock()
	l.flows--
	l.armIdle()
	l.mu.Unlock()
	l.pool.unusedCheck(false)
}

// closeChannel is a channel's release: it uncounts the channel and its
// flow.
func (l *link) closeChannel() {
	l.channels.Add(-1)
	l.removeFlow()
}

// armIdle starts the idle timer if the connection is up and carries no
// flow. Call with l.mu held.
//
// A retired pool's connection closes at once: idle_timeout keeps
// connections for flows to come, and a retired pool takes none.
func (l *link) armIdle() {
	if l.flows > 0 || l.cur == nil {
		return
	}
	d := l.pool.p.IdleTimeout
	if l.pool.retired.Load() {
		d = 0
	} else if d < 0 {
		return
	}
	if l.idle != nil {
		l.idle.Stop()
	}
	s := l.cur
	l.idle = time.AfterFunc(d, func() {
		l.mu.Lock()
		idle := l.flows == 0 && l.cur == s
		if idle {
			l.cur = nil
			l.update(nil)
		}
		l.mu.Unlock()
		if idle {
			l.log.WithField("idle", l.pool.p.IdleTimeout.String()).Info("closing idle SSH connection")
			s.end()
			l.pool.unusedCheck(true)
		}
	})
}

// get returns the connection, connecting if there is none. Callers that
// arrive while an attempt runs (or waits out its backoff) share its result.
//
// A caller waits until ctx ends; the attempt goes on without it (a
// terminal prompt's answer then serves the next flow), but once every
// caller has given up it is abandoned (Question.Abandoned), and a
// prompter may withdraw its question. A caller that joined an attempt
// whose question was withdrawn tries again.
func (l *link) get(ctx context.Context) (*session, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, errors.New("broker closed")
		}
		if s := l.cur; s != nil {
			l.mu.Unlock()
			return s, nil
		}
		a := l.connecting
		if a == nil && l.lastErr != nil && time.Now().Before(l.retryAt) {
			// Backing off after a failure: refuse at once (the
			// application sees a refused connection, and a
			// fallback_direct rule goes direct) instead of holding the
			// flow for the whole back-off.
			err := fmt.Errorf("%w (next attempt in %v)", l.lastErr, time.Until(l.retryAt).Round(time.Second))
			l.mu.Unlock()
			return nil, err
		}
		if a == nil {
			a = &attempt{done: make(chan struct{}), abandoned: make(chan struct{})}
			l.connecting = a
			l.update(nil)
			go l.connect(a)
		}
		a.waiters++
		l.mu.Unlock()

		select {
		case <-a.done:
			l.leave(a)
			if a.err != nil && a.withdrawn.Load() && ctx.Err() == nil {
				continue
			}
			return a.s, a.err
		case <-ctx.Done():
			l.leave(a)
			return nil, ctx.Err()
		}
	}
}

// connect makes one attempt and publishes it.
func (l *link) connect(a *attempt) {
	var s *session
	err := errors.New("broker closed")
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		s, err = l.establish(a)
	}
	l.mu.Lock()
	l.connecting = nil
	if err == nil && l.closed {
		s.end()
		s, err = nil, errors.New("broker closed")
	}
	closed = l.closed
	withdrawn := err != nil && a.withdrawn.Load()
	l.lastErr = err
	switch {
	case err == nil:
		l.failures = 0
		l.retryAt = time.Time{}
		l.cur = s
		if l.lost {
			l.lost = false
			l.pool.reconnects.Add(1)
		}
		// Nobody may be left to use it (its flows gave up while, say,
		// the user typed a password): let it go idle like any other.
		l.armIdle()
	case withdrawn:
		// Nobody answered before every flow gave up: no backoff, the
		// next flow tries (and asks) again.
		l.retryAt = time.Time{}
	default:
		l.failures++
		// Exponential backoff with jitter, so many clients of one server
		// do not retry in step.
		b := min(backoffMax, backoffMin<<min(l.failures-1, 10))
		l.retryAt = time.Now().Add(b/2 + rand.N(b/2))
		if !closed {
			// The end of the backoff is a change of state too.
			if l.backoff != nil {
				l.backoff.Stop()
			}
			l.backoff = time.AfterFunc(time.Until(l.retryAt), func() {
				l.mu.Lock()
				l.update(nil)
				l.mu.Unlock()
			})
		}
	}
	if closed {
		l.update(nil)
	} else {
		l.update(err)
	}
	a.s, a.err = s, err
	l.mu.Unlock()
	// The failure is logged before the waiters learn of it: the flows'
	// own errors point at this line, which must be there when they do.
	if err != nil {
		switch {
		case closed:
		case withdrawn:
			l.log.WithError(err).Warn("SSH login given up: every flow waiting for it gave up before the prompt was answered; the next flow asks again")
		default:
			l.log.WithError(err).Error("SSH connection failed")
		}
	}
	close(a.done)
	if err != nil {
		l.pool.unusedCheck(false)
		return
	}
	go l.keepalive(s)
	go l.watch(s)
}

// watch waits for the connection's end and forgets it.
func (l *link) watch(s *session) {
	err := s.client.Wait()
	why := fmt.Errorf("SSH connection to %s lost", s.server)
	if err != nil {
		why = fmt.Errorf("SSH connection to %s lost: %w", s.server, err)
	}
	if l.drop(s, why) {
		l.log.WithError(err).Warn("SSH connection lost; its flows are reset, the next flow reconnects")
	}
	// Totals of this connection and the profile's earlier ones on it.
	l.log.WithFields(logrus.Fields{
		"server":                 s.server,
		"channel_requests_total": l.requestsRefused.Load(),
		"stderr_discarded_total": l.stderrDiscarded.Load(),
		"server_channels_total":  l.channelOpensRefused.Load(),
	}).Debug("SSH connection ended")
}

// drop forgets the session, so the next flow connects anew, and ends it;
// why (the connection was lost) becomes the profile's last error. It
// reports whether the session was the link's current one, and the broker
// is not closing.
func (l *link) drop(s *session, why error) bool {
	l.mu.Lock()
	current := l.cur == s
	closed := l.closed
	if current {
		l.cur = nil
		if l.idle != nil {
			l.idle.Stop()
			l.idle = nil
		}
		if !closed {
			l.lost = true
			l.update(why)
		}
	}
	l.mu.Unlock()
	s.end()
	if current {
		l.pool.unusedCheck(false)
	}
	return current && !closed
}

// keepalive sends keepalive@openssh.com every interval while none is
// pending, and closes the connection once the server has sent nothing at
// all for interval × count of shunt's watching (see silence). Any byte
// counts, so a busy connection whose replies queue behind data is never
// taken for dead. It closes it too once the server has answered no
// channel open for the profile's OpenStallTimeout while some waited: a
// server that answers keepalives but not opens would otherwise refuse
// every new flow for ever.
func (l *link) keepalive(s *session) {
	p := l.pool.p
	limit := p.KeepaliveInterval * time.Duration(p.KeepaliveCount)
	check := max(p.KeepaliveInterval/4, 10*time.Millisecond)
	t := time.NewTicker(check)
	defer t.Stop()
	start := time.Now()
	// What the handshake read is the last byte so far; a start scheduled
	// late must not pass for a byte from the server (CheckNow would take
	// it for an answer).
	s.transport.lastRead.CompareAndSwap(0, start.UnixNano())
	quiet := newSilence(start, s.transport.lastRead.Load(), max(2*check, silenceStep))
	var pending atomic.Bool
	lastSent := start
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			// The time now, not the tick's: a tick sent before shunt
			// was stopped may be read only after it.
			now := time.Now()
			silent, resumed := quiet.observe(now, s.transport.lastRead.Load())
			if silent >= limit {
				l.log.WithField("silent_for", silent.Round(time.Millisecond).String()).
					Warn("SSH server stopped answering keepalives; closing the connection, the next flow reconnects")
				// Replaced at once, whatever x/crypto's goroutines
				// are blocked on: Close and Wait may never return.
				l.drop(s, fmt.Errorf("SSH server %s stopped answering keepalives (silent for %v)", s.server, silent.Round(time.Millisecond)))
				return
			}
			if stall, n := s.opens.stalled(now); p.OpenStallTimeout > 0 && stall >= p.OpenStallTimeout {
				l.log.WithFields(logrus.Fields{"unanswered_for": stall.Round(time.Millisecond).String(), "opens_waiting": n}).
					Warn("SSH server answers no channel open; closing the connection, the next flow reconnects")
				l.drop(s, fmt.Errorf("SSH server %s answered none of %d channel opens for %v", s.server, n, stall.Round(time.Millisecond)))
				return
			}
			// After a pause of shunt's own, ask at once: the server
			// gets its full bound to answer, and proves itself soon.
			if (resumed || now.Sub(lastSent) >= p.KeepaliveInterval) && !pending.Load() {
				pending.Store(true)
				lastSent = now
				go func() {
					// Any answer, even "unknown request", proves the
					// connection alive (its bytes update lastRead).
					s.client.SendRequest("keepalive@openssh.com", true, nil)
					pending.Store(false)
				}()
			}
		}
	}
}

// silenceStep is the least silence one tick of the keepalive may count:
// a tick late by less (a busy machine, a garbage collection) is no
// pause of shunt's.
const silenceStep = time.Second

// silence measures how long a server has sent nothing while shunt was
// watching. Time shunt itself did not run (stopped with SIGSTOP, the
// machine asleep) is not the server's silence: the server could not have
// been heard, and a connection that outlived a minute's sleep would
// otherwise be closed at the first tick after it, before the check that
// the clock jump starts could hear the server's answer. So each
// observation counts at most step (twice the tick period, at least
// silenceStep) of silence.
type silence struct {
	step     time.Duration
	lastTick time.Time
	lastRead int64 // UnixNano of the last byte, as watchedConn records it
	silent   time.Duration
}

func newSilence(now time.Time, lastRead int64, step time.Duration) *silence {
	return &silence{step: step, lastTick: now, lastRead: lastRead}
}

// observe records a tick at now, with the time of the last byte read,
// and returns the silence so far, and whether shunt was away since the
// last tick (the gap exceeded step).
func (m *silence) observe(now time.Time, lastRead int64) (time.Duration, bool) {
	// The monotonic clock does not count a machine's sleep; the wall
	// clock does (Round(0) strips the monotonic reading).
	gap := max(now.Sub(m.lastTick), now.Round(0).Sub(m.lastTick.Round(0)))
	m.lastTick = now
	counted := min(max(gap, 0), m.step)
	if lastRead != m.lastRead {
		// Something came since the last tick: silence since then, but
		// no more than this tick may count.
		m.lastRead = lastRead
		m.silent = min(max(now.Round(0).Sub(time.Unix(0, lastRead)), 0), counted)
	} else {
		m.silent += counted
	}
	return m.silent, gap > m.step
}

func (l *link) dial(ctx context.Context, addr string) (net.Conn, error) {
	s, err := l.get(ctx)
	if err != nil {
		return nil, &SetupError{Err: err}
	}
	start := time.Now()
	ch, err := l.openDirect(ctx, s, addr)
	if err != nil && s.lost() && ctx.Err() == nil {
		// The connection died under the open, before shunt noticed: the
		// flow has sent nothing yet, so it gets a fresh connection (once)
		// instead of a refusal that names a loss it had no part in. If
		// that cannot be had, the application is refused with the reason
		// (the proxy or server that is down).
		if l.drop(s, fmt.Errorf("SSH connection to %s lost", s.server)) {
			l.log.Warn("SSH connection lost; its flows are reset, the next flow reconnects")
		}
		if s, err = l.get(ctx); err != nil {
			return nil, &SetupError{Err: err}
		}
		start = time.Now()
		ch, err = l.openDirect(ctx, s, addr)
	}
	if err != nil {
		var oce *ssh.OpenChannelError
		var busy *PendingOpensError
		if errors.As(err, &busy) {
			return nil, err
		}
		if errors.As(err, &oce) {
			return nil, &ChannelError{Profile: l.pool.p.Name, Target: addr, Err: oce}
		}
		if s.lost() {
			return nil, fmt.Errorf("profile %s: open channel to %s: %w", l.pool.p.Name, addr, ErrConnectionLost)
		}
		return nil, fmt.Errorf("profile %s: open channel to %s: %w", l.pool.p.Name, addr, err)
	}
	l.channelOpenTook(time.Since(start))
	if s.stderr {
		go l.discardStderr(ch, addr)
	}
	l.channels.Add(1)
	return &channelConn{ch: ch, s: s, target: addr, traffic: &l.traffic, release: l.closeChannel}, nil
}

// close ends the connection, if any, and returns what is closed once
// x/crypto has let go of it (nil without a connection).
func (l *link) close() <-chan struct{} {
	l.mu.Lock()
	l.closed = true
	s := l.cur
	l.cur = nil
	if l.idle != nil {
		l.idle.Stop()
	}
	if l.backoff != nil {
		l.backoff.Stop()
	}
	l.update(nil)
	l.mu.Unlock()
	if s == nil {
		return nil
	}
	s.end()
	return s.closed
}
