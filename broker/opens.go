package broker

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// Channel opens the server has not answered yet. sshd answers a
// direct-tcpip open only when its connect to the target has succeeded or
// failed; to a destination that drops SYNs that is Linux's connect
// timeout later (~127 s, net.ipv4.tcp_syn_retries = 6). Meanwhile the
// open holds a descriptor in the sshd process serving the connection,
// and x/crypto offers no way to withdraw it: a flow whose application
// was refused at its dial timeout leaves the open behind, and retries
// pile up until sshd runs out of descriptors and refuses every flow.
//
// So the opens in flight are bounded per profile (MaxPendingOpens): a
// flow beyond the bound is refused at once (*PendingOpensError). An open
// whose flow gave up keeps its slot until the server answers it, and a
// channel opened then is closed at once (see openDirect). And a
// connection whose server answers no open at all for OpenStallTimeout
// while some wait is declared broken and replaced (see link.keepalive).

// DefaultMaxPendingOpens bounds a profile's channel opens in flight. sshd
// serves each SSH connection in a process of its own, which has 1,024
// descriptors unless its unit raises the limit (MaxSessions bounds
// session channels only, not forwarding); each open in flight holds one
// (its connect), and each open channel one: 640 leaves a third of them to
// the flows that are open. It lies above the router's share of set-ups
// for one destination (512, router/limit.go), so a flood to one
// destination that does not answer is bounded there first and leaves
// room for the flows to other destinations; this bound catches a flood
// spread over many. Applications open far fewer at once to destinations
// that answer (a browser some tens).
const DefaultMaxPendingOpens = 640

// DefaultOpenStallTimeout is how long a server may answer no channel open
// while some wait before its connection is declared broken: longer than
// sshd's ~127 s connect to a destination that drops SYNs, after which
// sshd answers with a refusal, so a working server behind a black hole
// is not taken for a broken one.
const DefaultOpenStallTimeout = 3 * time.Minute

// PendingOpensError refuses a flow because its profile has Limit channel
// opens in flight already, none of them answered by the server yet.
type PendingOpensError struct {
	Profile string
	Target  string
	Limit   int
}

// Overloaded tells the router that the flow was refused at once as part
// of a flood (router.Overloaded), which the broker warns about itself.
func (e *PendingOpensError) Overloaded() bool { return true }

func (e *PendingOpensError) Error() string {
	return fmt.Sprintf("profile %s: %d channel opens are waiting for the server's answer already (max_pending_opens); refused the one to %s at once",
		e.Profile, e.Limit, e.Target)
}

// pendingOpens counts one session's channel opens in flight, into the
// link's and the profile's totals. When the session ends its opens stop
// counting at once: the server has let go of them with the connection,
// even if x/crypto never returns from OpenChannel (its reader stuck).
type pendingOpens struct {
	profile *atomic.Int64 // the profile's opens in flight, over its sessions
	link    *atomic.Int64 // the link's, over its sessions

	mu    sync.Mutex
	n     int  // this session's opens in flight
	ended bool // the session has ended
	// unanswered is since when opens have waited without the server
	// answering any (zero while none waits).
	unanswered time.Time
}

// start counts an open unless the profile has limit in flight already.
func (p *pendingOpens) start(limit int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return true // the open fails at once: the connection is gone
	}
	for {
		n := p.profile.Load()
		if n >= int64(limit) {
			return false
		}
		if p.profile.CompareAndSwap(n, n+1) {
			break
		}
	}
	p.link.Add(1)
	if p.n == 0 {
		p.unanswered = time.Now()
	}
	p.n++
	return true
}

// finish uncounts an open the server answered (or that failed with the
// connection).
func (p *pendingOpens) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.n--
	p.profile.Add(-1)
	p.link.Add(-1)
	if p.n > 0 {
		p.unanswered = time.Now() // the server answers: the rest wait from now
	} else {
		p.unanswered = time.Time{}
	}
}

// end uncounts every open of the ended session.
func (p *pendingOpens) end() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.ended = true
	p.profile.Add(int64(-p.n))
	p.link.Add(int64(-p.n))
	p.n = 0
}

// stalled reports for how long opens have waited while the server
// answered none, and how many wait.
func (p *pendingOpens) stalled(now time.Time) (time.Duration, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		return 0, 0
	}
	return now.Sub(p.unanswered), p.n
}

// refusedBusy counts and logs (at most once every busyLogEvery per
// profile) a flow refused for the profile's opens in flight.
func (l *link) refusedBusy(addr string) error {
	pl := l.pool
	l.opensRefused.Add(1)
	n := pl.busyRefused.Add(1)
	now := time.Now().UnixNano()
	last := pl.busyLogged.Load()
	if now-last >= int64(busyLogEvery) && pl.busyLogged.CompareAndSwap(last, now) {
		pl.log.WithFields(logrus.Fields{
			"target":            addr,
			"max_pending_opens": pl.p.MaxPendingOpens,
			"refused_total":     n,
		}).Warn("refusing flows: the server has not answered the profile's channel opens in flight (a destination that does not answer?)")
	}
	return &PendingOpensError{Profile: pl.p.Name, Target: addr, Limit: pl.p.MaxPendingOpens}
}

// busyLogEvery spaces the warnings about flows refused for opens in flight.
const busyLogEvery = 10 * time.Second

// refuseChannelOpens refuses every channel the server opens: shunt asks
// for no remote forwarding, X11 or agent forwarding and opens no session,
// so no forwarded-tcpip, x11, auth-agent@openssh.com or session channel
// is ever expected. Each type is logged once per connection (at debug),
// all are counted. It replaces x/crypto's own loop (which refuses them
// silently) and ends with the connection.
func (s *session) refuseChannelOpens(l *link, chans <-chan ssh.NewChannel) {
	logged := map[string]bool{}
	for nc := range chans {
		l.channelOpensRefused.Add(1)
		t := nc.ChannelType()
		if len(t) > 64 {
			t = t[:64] + "…"
		}
		if len(logged) < 16 && !logged[t] {
			logged[t] = true
			l.log.WithFields(logrus.Fields{"server": s.server, "channel_type": t}).
				Debug("refusing a channel the server opened: shunt accepts none")
		}
		nc.Reject(ssh.Prohibited, "the client accepts no channels")
	}
}

// noChannels is a closed channel of channel opens: what ssh.NewClient is
// given, so that its own loop ends at once (refuseChannelOpens serves
// the real ones).
func noChannels() <-chan ssh.NewChannel {
	c := make(chan ssh.NewChannel)
	close(c)
	return c
}
