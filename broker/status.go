package broker

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/shunt-dev/shunt/internal/errs"
	"github.com/shunt-dev/shunt/state"
)

// Events receives the broker's connection state changes (state.EventState
// events, each with a snapshot of the profile). Publish is called on the
// broker's own goroutines, with the profile's state lock held, so that a
// profile's events arrive in the order its states changed: it must not
// block (queue the event or drop it) and must not call the Broker.
// Active reports whether anyone listens; while it is false no event is
// built.
type Events interface {
	Active() bool
	Publish(state.Event)
}

// traffic counts a connection's channel bytes: sent from the
// applications, received for them.
type traffic struct {
	sent, received atomic.Int64
}

// stateOf is the link's state from its fields. Call with l.mu held.
func (l *link) stateOf() string {
	switch {
	case l.closed:
		return state.Idle
	case l.cur != nil:
		return state.Connected
	case l.connecting != nil && l.asking > 0:
		return state.WaitingForAuth
	case l.connecting != nil:
		return state.Connecting
	case l.lastErr != nil && time.Now().Before(l.retryAt):
		return state.Backoff
	}
	return state.Idle
}

// update publishes the link's state after a change of its fields; err,
// when set, becomes the profile's last error. Call with l.mu held.
func (l *link) update(err error) {
	l.pool.linkChanged(l, l.stateOf(), err)
}

// setTarget records the server a connection attempt tries, and the way to
// it ("direct", "via ...").
func (l *link) setTarget(server, route string) {
	pl := l.pool
	pl.smu.Lock()
	l.server, l.route, l.hostKey = server, route, ""
	pl.smu.Unlock()
}

// setHostKey records the host key of the server the link just logged in to.
func (l *link) setHostKey(key string) {
	l.pool.smu.Lock()
	l.hostKey = key
	l.pool.smu.Unlock()
}

// setAsking counts a prompt the link's attempt waits on (+1) or no longer
// waits on (-1).
func (l *link) setAsking(d int) {
	l.mu.Lock()
	l.asking += d
	l.update(nil)
	l.mu.Unlock()
}

// statePriority orders the states for a profile of several connections:
// the profile is in the highest state one of its connections is in.
var statePriority = map[string]int{
	state.Idle: 0, state.Backoff: 1, state.Connecting: 2, state.WaitingForAuth: 3, state.Connected: 4,
}

// linkChanged records link l's state st, and err as the profile's last
// error, and publishes the profile's state when it changed. A connection
// that comes up clears the last error.
func (pl *pool) linkChanged(l *link, st string, err error) {
	pl.smu.Lock()
	defer pl.smu.Unlock()
	l.st = st
	errText := pl.lastErr
	switch {
	case err != nil:
		errText = errs.OneLine(err.Error())
	case st == state.Connected:
		errText = ""
	}
	agg := state.Idle
	for _, x := range pl.links {
		if statePriority[x.st] > statePriority[agg] {
			agg = x.st
		}
	}
	if agg == pl.state && errText == pl.lastErr {
		return
	}
	pl.lastErr = errText
	if agg != pl.state {
		pl.state, pl.since = agg, time.Now()
	}
	if ev := pl.b.opts.Events; ev != nil && ev.Active() {
		snap := pl.snapshotLocked()
		ev.Publish(state.Event{Event: state.EventState, Time: time.Now(), Profile: &snap})
	}
}

// snapshotLocked is the pool's status. Call with pl.smu held.
func (pl *pool) snapshotLocked() state.Profile {
	sp := state.Profile{
		Name: pl.name, Via: pl.via, State: pl.state, Since: pl.since,
		Reconnects: int(pl.reconnects.Load()), Error: pl.lastErr,
	}
	var shown *link
	for _, l := range pl.links {
		if l.st == state.Connected {
			sp.Connections++
		}
		if shown == nil && l.st == pl.state {
			shown = l
		}
		sp.Channels += int(l.channels.Load())
		sp.Sent += l.traffic.sent.Load()
		sp.Received += l.traffic.received.Load()
	}
	if shown == nil {
		shown = pl.links[0]
	}
	sp.Server, sp.Route = shown.server, shown.route
	return sp
}

func (pl *pool) snapshot() state.Profile {
	pl.smu.Lock()
	defer pl.smu.Unlock()
	return pl.snapshotLocked()
}

// Status reports the connection state of every profile, in the order New
// (or the last SetProfiles) was given them, then of every
// host-from-application server the broker keeps connections for (by
// profile, then server), then of the pools SetProfiles retired that still
// carry flows (Retired set; each leaves once its last channel has ended). Sent and Received
// count the bytes of the profile's channels (for a jump profile, those of
// the connections it carries); Reconnects counts connections made again
// after one was lost (not after an idle close); Error is the last
// connection error (the long explanation, on one line, without secrets),
// cleared when a connection comes up.
func (b *Broker) Status() []state.Profile {
	order := b.set.Load().order
	out := make([]state.Profile, 0, len(order))
	for _, pl := range order {
		out = append(out, pl.snapshot())
	}
	for _, pl := range b.viaPools() {
		out = append(out, pl.snapshot())
	}
	for _, pl := range b.retiredPools() {
		sp := pl.snapshot()
		sp.Retired = true
		out = append(out, sp)
	}
	return out
}

// viaPools lists the host-from-application pools by profile and server.
func (b *Broker) viaPools() []*pool {
	b.viaMu.Lock()
	pools := make([]*pool, 0, len(b.via))
	for _, pl := range b.via {
		pools = append(pools, pl)
	}
	b.viaMu.Unlock()
	slices.SortFunc(pools, func(x, y *pool) int {
		return cmp.Or(cmp.Compare(x.name, y.name), cmp.Compare(x.via, y.via))
	})
	return pools
}

// Connection is one SSH connection of a profile (or of a
// host-from-application server, named by Via), in more detail than
// Status gives.
type Connection struct {
	Profile string
	Via     string
	Index   int
	State   string // as in state.Profile
	Up      bool   // State is state.Connected
	Server  string // the host that answered, or is being tried
	// HostKey is the server's host key, "ED25519 SHA256:...", once a
	// connection to it is up (it stays after the connection ends, until
	// the next attempt).
	HostKey string
	// Channels open on the connection, and the bytes they carried (over
	// the life of the broker, across reconnects).
	Channels       int
	Sent, Received int64
	// RequestsRefused counts the channel requests the servers sent (sshd's
	// ClientAliveInterval probes among them), all refused as they came;
	// StderrDiscarded the stderr bytes they sent on forwarding channels.
	// Both over the life of the broker.
	RequestsRefused uint64
	StderrDiscarded uint64
	// ServerChannelsRefused counts the channels the servers opened
	// (forwarded-tcpip, x11, session, ...), all refused; OpensRefused the
	// flows refused at once because the profile had MaxPendingOpens
	// channel opens in flight; PendingOpens is the connection's opens in
	// flight now.
	ServerChannelsRefused uint64
	OpensRefused          uint64
	PendingOpens          int
}

// Connections reports every connection of every profile, then of every
// host-from-application server, in Status's order.
func (b *Broker) Connections() []Connection {
	var out []Connection
	for _, pl := range slices.Concat(b.set.Load().order, b.viaPools(), b.retiredPools()) {
		pl.smu.Lock()
		for _, l := range pl.links {
			out = append(out, Connection{
				Profile: pl.name, Via: pl.via, Index: l.index,
				State: l.st, Up: l.st == state.Connected, Server: l.server, HostKey: l.hostKey,
				Channels: int(l.channels.Load()),
				Sent:     l.traffic.sent.Load(), Received: l.traffic.received.Load(),
				RequestsRefused: l.requestsRefused.Load(), StderrDiscarded: l.stderrDiscarded.Load(),
				ServerChannelsRefused: l.channelOpensRefused.Load(),
				OpensRefused:          l.opensRefused.Load(), PendingOpens: int(l.opensPending.Load()),
			})
		}
		pl.smu.Unlock()
	}
	return out
}

// unusedCheck schedules the pruning of a host-from-application pool that
// nothing uses any more (no flow, no connection, no attempt): at once
// when its last connection has just closed for being idle (it went
// unused for its idle timeout already), else after its idle timeout (a
// failed or lost server is kept that long, and with it its backoff).
// Profiles' own pools are never pruned. Call without link locks held.
// A retired pool that nothing uses is forgotten at once (dropRetired).
func (pl *pool) unusedCheck(idleClosed bool) {
	if pl.retired.Load() {
		pl.b.dropRetired(pl)
		return
	}
	if pl.via == "" {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if !pl.unused() {
		return
	}
	d := pl.p.IdleTimeout
	if d < 0 {
		d = DefaultIdleTimeout
	}
	if idleClosed {
		d = 0
	}
	if pl.prune != nil {
		pl.prune.Stop()
	}
	pl.prune = time.AfterFunc(d, func() { pl.b.pruneVia(pl) })
}

// unused reports whether the pool has no flow, no connection and no
// attempt. For a host-from-application pool, only DialVia (under
// b.viaMu) can make it used again.
func (pl *pool) unused() bool {
	for _, l := range pl.links {
		l.mu.Lock()
		busy := l.flows > 0 || l.cur != nil || l.connecting != nil
		l.mu.Unlock()
		if busy {
			return false
		}
	}
	return true
}

// pruneVia forgets a host-from-application pool if it is still unused.
func (b *Broker) pruneVia(pl *pool) {
	b.viaMu.Lock()
	key := pl.p.Name
	if b.viaClosed || b.via[key] != pl || !pl.unused() {
		b.viaMu.Unlock()
		return
	}
	delete(b.via, key)
	b.viaMu.Unlock()
	pl.close() // nothing to wait for: it has no connection
	pl.log.Debug("forgot the unused host-from-application server")
}
