package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// A direct-tcpip channel carries one flow's bytes, but x/crypto gives it
// two more inputs that someone must read as they arrive: channel requests
// (sshd's ClientAliveInterval probes come as keepalive@openssh.com
// requests on an open channel) and extended (stderr) data. x/crypto queues
// 16 requests per channel and then stops reading the whole connection
// until one is taken; unread stderr data keeps its share of the channel's
// 2 MiB window, so a channel stalls once that much went unread. Each is
// delivered only to a reader parked on it, and the flow's own goroutine is
// parked in Read. x/crypto's Dial parks two more goroutines per channel
// for them; here requests are taken by a few goroutines per connection
// (requestSink), and stderr is read only where it can come (discardStderr).

// requestShardSize is how many channels one goroutine of a requestSink
// waits on. Each change to the set (a channel opened or closed) and each
// request costs a select over the shard's channels; each shard costs a
// goroutine. 64 keeps both small: a few microseconds a change, tens of
// bytes per channel.
const requestShardSize = 64

// requestSink refuses the channel requests of one SSH connection's
// channels as they arrive, whatever the channels' flows are doing,
// without a goroutine per channel: a shard goroutine waits on up to
// requestShardSize channels' request queues at once.
type requestSink struct {
	log      logrus.FieldLogger
	declined *atomic.Uint64 // counts every request taken

	logged atomic.Bool // the first request was logged

	mu     sync.Mutex
	shards []*requestShard
}

// requestShard is one goroutine's set of request queues. A queue leaves
// the set when x/crypto closes it: when both sides have closed the channel,
// or the connection has ended. So a channel keeps being served after the
// flow let it go, until the server has closed it too.
type requestShard struct {
	sink    *requestSink
	wake    chan struct{}         // a queue was added
	added   []<-chan *ssh.Request // queues to add; guarded by sink.mu
	n       int                   // queues in the set or added; guarded by sink.mu
	running bool                  // the goroutine runs; guarded by sink.mu
	cases   []reflect.SelectCase  // case 0 is wake; only the goroutine uses it
}

// watch serves reqs until x/crypto closes it.
func (s *requestSink) watch(reqs <-chan *ssh.Request) {
	s.mu.Lock()
	var sh *requestShard
	for _, x := range s.shards {
		if x.n < requestShardSize {
			sh = x
			break
		}
	}
	if sh == nil {
		sh = &requestShard{sink: s, wake: make(chan struct{}, 1)}
		s.shards = append(s.shards, sh)
	}
	sh.n++
	sh.added = append(sh.added, reqs)
	start := !sh.running
	sh.running = true
	s.mu.Unlock()
	if start {
		go sh.run()
		return
	}
	select {
	case sh.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// run waits on the shard's queues and refuses what arrives. It exits when
// the set is empty; watch starts it again.
func (sh *requestShard) run() {
	s := sh.sink
	if sh.cases == nil {
		sh.cases = make([]reflect.SelectCase, 1, requestShardSize+1)
		sh.cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(sh.wake)}
	}
	for {
		s.mu.Lock()
		for i, q := range sh.added {
			sh.cases = append(sh.cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(q)})
			sh.added[i] = nil
		}
		sh.added = sh.added[:0]
		if len(sh.cases) == 1 {
			sh.running = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()

		i, v, ok := reflect.Select(sh.cases)
		switch {
		case i == 0: // more queues to add
		case !ok: // the channel is gone
			last := len(sh.cases) - 1
			sh.cases[i] = sh.cases[last]
			sh.cases[last] = reflect.SelectCase{}
			sh.cases = sh.cases[:last]
			s.mu.Lock()
			sh.n--
			s.mu.Unlock()
		default:
			s.refuse(v.Interface().(*ssh.Request))
		}
	}
}

// refuse answers a channel request with failure (RFC 4254 5.4: a request
// that is not understood), as OpenSSH's ssh does for a forwarding channel;
// for sshd's keepalive@openssh.com probes any answer proves us alive.
func (s *requestSink) refuse(r *ssh.Request) {
	s.declined.Add(1)
	if s.logged.CompareAndSwap(false, true) {
		s.log.WithFields(logrus.Fields{"request": r.Type, "want_reply": r.WantReply}).
			Debug("refusing the server's channel requests (sshd's ClientAliveInterval probes are such requests)")
	}
	r.Reply(false, nil) // nothing is sent when no reply is wanted
}

// stderrMayArrive reports whether a server may send extended (stderr) data
// on a direct-tcpip channel, so that it must be read. OpenSSH's sshd never
// does: its forwarding channels ignore extended data (CHAN_EXTENDED_IGNORE
// in channels.c). For a server that says it is OpenSSH no goroutine waits
// for stderr data; a server that lied and sent some would stall only the
// channel it sent it on, which it could as well by sending nothing. (ssh
// itself chooses behaviour by the peer's version the same way, compat.c.)
func stderrMayArrive(serverVersion []byte) bool {
	return !strings.HasPrefix(string(serverVersion), "SSH-2.0-OpenSSH")
}

// discardStderr reads and counts the channel's extended data until the
// channel ends, so it never holds the channel's window.
func (l *link) discardStderr(ch ssh.Channel, target string) {
	buf := make([]byte, 1024)
	r := ch.Stderr()
	logged := false
	for {
		n, err := r.Read(buf)
		if n > 0 {
			l.stderrDiscarded.Add(uint64(n))
			if !logged {
				logged = true
				l.log.WithField("target", target).Debug("server sent stderr data on a forwarding channel; discarding it")
			}
		}
		if err != nil {
			return
		}
	}
}

// directTCPIP is the payload of a direct-tcpip channel open (RFC 4254
// 7.2): where to connect, and where the connection comes from (as
// 127.0.0.1:0, as OpenSSH's ssh -W). It is built by hand: ssh.Marshal
// walks the struct by reflection, which was 3% of shunt's CPU when
// opening thousands of flows a second.
func directTCPIP(host string, port uint16) []byte {
	const orig = "127.0.0.1"
	b := make([]byte, 0, 4+len(host)+4+4+len(orig)+4)
	b = binary.BigEndian.AppendUint32(b, uint32(len(host)))
	b = append(b, host...)
	b = binary.BigEndian.AppendUint32(b, uint32(port))
	b = binary.BigEndian.AppendUint32(b, uint32(len(orig)))
	b = append(b, orig...)
	return binary.BigEndian.AppendUint32(b, 0)
}

// Open states: the caller waits; the caller took the answer; the caller
// gave up before the answer.
const (
	openWaiting int32 = iota
	openTaken
	openAbandoned
)

// openDirect opens a direct-tcpip channel to addr, resolved by the server.
// Unlike x/crypto's Client.Dial, it starts no goroutine that outlives the
// open (Dial keeps two per channel, one of them holding an 8 KiB buffer:
// 20,000 goroutines and 80 MB at 10,000 idle flows).
//
// x/crypto's OpenChannel cannot be cancelled: it returns when the server
// answers or the connection ends. It runs in a goroutine that lives only
// that long; if ctx ends first the caller returns at once, and that
// goroutine closes the channel should the server still confirm it, so the
// server lets go of its side (its connection to the target) at once.
// Until the answer, the open holds one of the profile's MaxPendingOpens
// slots; with none free it is refused at once (*PendingOpensError).
func (l *link) openDirect(ctx context.Context, s *session, addr string) (ssh.Channel, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", addr)
	}
	payload := directTCPIP(host, uint16(port))
	if !s.opens.start(l.pool.p.MaxPendingOpens) {
		return nil, l.refusedBusy(addr)
	}
	type result struct {
		ch  ssh.Channel
		err error
	}
	done := make(chan result, 1)
	var state atomic.Int32
	go func() {
		ch, reqs, err := s.client.OpenChannel("direct-tcpip", payload)
		s.opens.finish() // the slot is free before the caller learns the answer
		if err == nil {
			// Served until the server has closed the channel too,
			// even if nobody wants it any more.
			s.requests.watch(reqs)
		}
		if state.CompareAndSwap(openWaiting, openTaken) {
			done <- result{ch, err}
			return
		}
		if err == nil {
			ch.Close()
			l.log.WithField("target", addr).Debug("closed a channel the server opened after its flow had given up")
		}
	}()
	select {
	case r := <-done:
		return r.ch, r.err
	case <-ctx.Done():
		if state.CompareAndSwap(openWaiting, openAbandoned) {
			return nil, ctx.Err()
		}
		r := <-done // the answer has just come
		return r.ch, r.err
	}
}

// channelConn is a tunnelled connection: a direct-tcpip channel.
type channelConn struct {
	ch      ssh.Channel
	s       *session
	target  string
	traffic *traffic // the link's byte counters
	release func()
	once    sync.Once
}

var _ net.Conn = (*channelConn)(nil)

// Read turns the EOF of a channel whose SSH connection died into
// ErrConnectionLost.
func (c *channelConn) Read(b []byte) (int, error) {
	n, err := c.ch.Read(b)
	if n > 0 {
		c.traffic.received.Add(int64(n))
	}
	if err == io.EOF && c.s.lost() {
		err = ErrConnectionLost
	}
	return n, err
}

// Write reports a dead connection as ErrConnectionLost too.
func (c *channelConn) Write(b []byte) (int, error) {
	n, err := c.ch.Write(b)
	if n > 0 {
		c.traffic.sent.Add(int64(n))
	}
	if err != nil && c.s.lost() {
		err = ErrConnectionLost
	}
	return n, err
}

// CloseWrite sends EOF on the channel: the far end sees a half-close.
func (c *channelConn) CloseWrite() error { return c.ch.CloseWrite() }

// Close closes the channel and uncounts the flow.
func (c *channelConn) Close() error {
	err := c.ch.Close()
	c.once.Do(c.release)
	return err
}

// LocalAddr implements net.Conn: a channel has no address of its own.
func (c *channelConn) LocalAddr() net.Addr { return channelAddr("ssh channel") }

// RemoteAddr implements net.Conn: the target the server connected to.
func (c *channelConn) RemoteAddr() net.Addr { return channelAddr(c.target) }

var errNoDeadline = errors.New("ssh channel: deadlines are not supported")

// SetDeadline implements net.Conn; channels have no deadlines.
func (c *channelConn) SetDeadline(time.Time) error { return errNoDeadline }

// SetReadDeadline implements net.Conn; channels have no deadlines.
func (c *channelConn) SetReadDeadline(time.Time) error { return errNoDeadline }

// SetWriteDeadline implements net.Conn; channels have no deadlines.
func (c *channelConn) SetWriteDeadline(time.Time) error { return errNoDeadline }

type channelAddr string

func (a channelAddr) Network() string { return "ssh" }
func (a channelAddr) String() string  { return string(a) }
