package router

import (
	"cmp"
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shunt-dev/shunt/state"
)

// Live state: the flows running now, totals since the router started, and
// events as flows open and close.
//
// It costs the data path nothing it would not pay anyway: the splice adds
// each chunk it writes to the flow's byte counts (one atomic add), the
// table is locked briefly when a flow is registered, when it opens and
// when it ends, and everything else (addresses as text, rule labels, the
// events themselves) is built only for a snapshot or for a listener.

// Publisher receives the router's events: a flow opened, a flow closed or
// was refused. Active tells whether anyone listens; the router builds an
// event only then, and Publish must not block (events.Bus fits).
type Publisher interface {
	Active() bool
	Publish(state.Event)
}

// Why a flow ended or was refused, as its close event says.
const (
	reasonClosed  = "closed"
	reasonReset   = "reset on request"
	reasonBlocked = "blocked by rule"
	// reasonMemory: its application stopped reading, and the flows'
	// buffered data was over the budget (memory.go).
	reasonMemory  = "reset: over the flow memory budget"
	reasonLimit   = "refused: too many set-ups in flight"
	reasonTimeout = "refused: direct connect timed out"
	reasonDropped = "dropped: application handshake failed"
	// reasonNotCarried: the flow's user is not one whose flows its
	// profile carries (Rule.Carries).
	reasonNotCarried = "refused: user not allowed on the profile"
	// Followed by the error.
	reasonUpstream = "refused: upstream failed: "
	reasonBroken   = "reset: "
)

// flowEntry is one flow, from its SYN to its end: what the router decided,
// its byte counts, its place in the flow table, and what it logs.
type flowEntry struct {
	r *Router
	// Set before the flow is registered, then only read.
	id       uint64
	f        Flow
	ownerErr error
	d        Decision
	rule     string // d's rule label, "" for none
	start    time.Time
	// peer is the far end of the application's socket, for owner
	// lookups: Dst for a captured flow, the listener for an inbound one.
	peer netip.AddrPort
	// via names the listener an inbound flow came to, "" for captured.
	via string
	// refusal says why the set-up refused the flow (nil: it opened).
	refusal *Refused

	bytes  byteCounts  // aToB is sent (from the application), bToA received
	open   atomic.Bool // set up: the splice runs
	direct atomic.Bool // the upstream is (being) connected direct

	// Guarded by the table's mu.
	prev, next *flowEntry
	count      *counter // the totals it adds to, once open

	// mu orders a reset (CloseFlow) against the flow's own steps.
	mu         sync.Mutex
	cancel     context.CancelFunc // the upstream dial's
	down, up   net.Conn           // once the application's side is accepted
	resetAsked bool
	resetWhy   string // the reason of the reset asked for
	ended      bool

	// The memory sweep's, guarded by the router's memory.mu.
	mem flowMem

	// For the log only, written by the flow's own goroutines in turn.
	setup    time.Duration
	closed   bool
	sent     int64
	received int64
}

// action is what is done with the flow: a tunnel rule's flow that fell
// back to direct is direct.
func (fe *flowEntry) action() Action {
	if fe.d.Action == Tunnel && fe.direct.Load() {
		return Direct
	}
	return fe.d.Action
}

// profile is the profile that carries the flow, "" unless it is tunnelled.
func (fe *flowEntry) profile() string {
	if fe.action() != Tunnel {
		return ""
	}
	return fe.d.Rule.Profile
}

func (fe *flowEntry) key() countKey {
	return countKey{rule: fe.rule, action: fe.action(), profile: fe.profile()}
}

// fill describes the flow in s.
func (fe *flowEntry) fill(s *state.Flow, phase string) {
	*s = state.Flow{
		ID:       fe.id,
		Src:      fe.f.Src.String(),
		Dst:      fe.f.Dst.String(),
		UID:      -1,
		Rule:     fe.rule,
		Action:   fe.action().String(),
		Profile:  fe.profile(),
		Sent:     fe.bytes.aToB.Load(),
		Received: fe.bytes.bToA.Load(),
		Started:  fe.start,
		State:    phase,
		Via:      fe.via,
	}
	if !fe.f.Dst.Addr().IsValid() {
		s.Dst = fe.f.target() // a name, never looked up here
	}
	if fe.f.Host != "" {
		// The application connected to the name (Dst is its fake
		// address): Name says so to readers that know no Host.
		s.Host, s.Name = fe.f.Host, fe.f.Host
	} else if len(fe.f.Names) > 0 {
		s.Name = fe.f.Names[0]
	}
	if o := fe.f.Owner; o != nil {
		s.App = o.Exe
		if !o.NoUID {
			s.UID = int(o.UID)
		}
	}
	if s.Profile != "" && fe.d.Rule.HostFromApplication {
		// The SSH server is the destination host itself (at the
		// profile's port).
		s.Server = fe.f.server()
	}
}

// resetRequested tells whether CloseFlow asked for this flow's end.
func (fe *flowEntry) resetRequested() bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	return fe.resetAsked
}

// connected records the flow's connections, so that a reset can reach
// them; false means a reset was asked for already (the caller resets them).
func (fe *flowEntry) connected(down, up net.Conn) bool {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.resetAsked {
		return false
	}
	fe.down, fe.up = down, up
	return true
}

// end marks the splice over, and tells whether a reset ended it, and why.
func (fe *flowEntry) end() (reset bool, why string) {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	fe.ended = true
	return fe.resetAsked, fe.resetWhy
}

// reset ends the flow as a broken one: a flow being set up gets no
// upstream (its application a refused connection), a running one is reset
// (RST to the application, the upstream closed). False when the flow is
// ending anyway, or a reset was asked for already.
func (fe *flowEntry) reset() bool { return fe.resetFor(reasonReset) }

// resetFor is reset, with the reason its close event and log give.
func (fe *flowEntry) resetFor(why string) bool {
	fe.mu.Lock()
	if fe.ended || fe.resetAsked {
		fe.mu.Unlock()
		return false
	}
	fe.resetAsked, fe.resetWhy = true, why
	down, up := fe.down, fe.up
	fe.mu.Unlock()
	if down == nil {
		fe.cancel() // the set-up sees it after its dial
		return true
	}
	// The application's side first: once the upstream is closed, the
	// splice would end the application's side with a FIN (a clean end) if
	// it were not reset already. Outside mu: closing an SSH channel may
	// wait for its connection.
	abort(down)
	abort(up)
	return true
}

// countKey is what the totals are kept by.
type countKey struct {
	rule    string
	action  Action
	profile string
}

// counter holds the totals of one countKey; guarded by the table's mu.
type counter struct {
	opened, refused, closed int64
	sent, received          int64 // of closed flows
	liveSent, liveReceived  int64 // scratch for Counters
}

// flowTable is the router's flows, in id order, and its totals.
type flowTable struct {
	ids atomic.Uint64

	mu         sync.Mutex
	byID       map[uint64]*flowEntry
	head, tail *flowEntry
	counts     map[countKey]*counter
}

func (t *flowTable) init() {
	t.byID = map[uint64]*flowEntry{}
	t.counts = map[countKey]*counter{}
}

// newID numbers a flow; ids start at 1 and are never reused.
func (t *flowTable) newID() uint64 { return t.ids.Add(1) }

// counter returns k's totals, made on first use; mu must be held.
func (t *flowTable) counter(k countKey) *counter {
	c := t.counts[k]
	if c == nil {
		c = &counter{}
		t.counts[k] = c
	}
	return c
}

// add registers a flow being set up.
func (t *flowTable) add(fe *flowEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[fe.id] = fe
	// Ids are handed out before flows register, so a flow may register
	// just after one with a higher id: keep the list in id order.
	at := t.tail
	for at != nil && at.id > fe.id {
		at = at.prev
	}
	fe.prev = at
	if at == nil {
		fe.next, t.head = t.head, fe
	} else {
		fe.next, at.next = at.next, fe
	}
	if fe.next == nil {
		t.tail = fe
	} else {
		fe.next.prev = fe
	}
}

// opened counts a flow that is set up; its splice runs from now on.
func (t *flowTable) opened(fe *flowEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fe.count = t.counter(fe.key())
	fe.count.opened++
	fe.open.Store(true)
}

// remove takes the flow out of the table (if it is in it) and counts its
// end: refused (it never opened), or closed with its bytes.
func (t *flowTable) remove(fe *flowEntry, refused bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[fe.id] == fe {
		delete(t.byID, fe.id)
		if fe.prev == nil {
			t.head = fe.next
		} else {
			fe.prev.next = fe.next
		}
		if fe.next == nil {
			t.tail = fe.prev
		} else {
			fe.next.prev = fe.prev
		}
		fe.prev, fe.next = nil, nil
	}
	if refused {
		t.counter(fe.key()).refused++
		return
	}
	fe.count.closed++
	fe.count.sent += fe.bytes.aToB.Load()
	fe.count.received += fe.bytes.bToA.Load()
}

// Flows returns the flows being set up or running, by id. It takes the
// table's lock only to list them: the rest is built without it.
func (r *Router) Flows() []state.Flow {
	t := &r.table
	t.mu.Lock()
	entries := make([]*flowEntry, 0, len(t.byID))
	for fe := t.head; fe != nil; fe = fe.next {
		entries = append(entries, fe)
	}
	t.mu.Unlock()
	out := make([]state.Flow, len(entries))
	for i, fe := range entries {
		phase := state.FlowSettingUp
		if fe.open.Load() {
			phase = state.FlowOpen
		}
		fe.fill(&out[i], phase)
	}
	return out
}

// CloseFlow resets the flow with that id, as a broken stream ends: the
// application gets a reset (not a clean end of stream) and the upstream is
// closed. A flow still being set up is refused once its upstream dial
// returns (which the reset cuts short). False when there is no such flow
// (any more), or it is being reset already.
func (r *Router) CloseFlow(id uint64) bool {
	t := &r.table
	t.mu.Lock()
	fe := t.byID[id]
	t.mu.Unlock()
	return fe != nil && fe.reset()
}

// Counter is the number of flows of one rule, action and profile since the
// router started, and their bytes.
type Counter struct {
	// Rule is the rule's label (`#2 "mail"`), "" for flows that no rule
	// matched (and those of always-direct applications).
	Rule   string
	Action Action
	// Profile carries the flows; "" unless Action is Tunnel. A tunnel
	// rule's flow that fell back to direct counts as direct.
	Profile string
	// Opened counts flows set up; Refused those that never were (blocked,
	// over the limits, upstream failed, the application gone, reset
	// during set-up); Closed those that ended after they opened.
	Opened, Refused, Closed int64
	// Sent counts bytes from the applications, Received bytes to them, of
	// running flows too.
	Sent, Received int64
}

// Counters returns the totals, by rule, action and profile (sorted so).
// It costs a pass over the running flows, under the table's lock.
func (r *Router) Counters() []Counter {
	t := &r.table
	t.mu.Lock()
	for _, c := range t.counts {
		c.liveSent, c.liveReceived = 0, 0
	}
	for fe := t.head; fe != nil; fe = fe.next {
		if c := fe.count; c != nil {
			c.liveSent += fe.bytes.aToB.Load()
			c.liveReceived += fe.bytes.bToA.Load()
		}
	}
	out := make([]Counter, 0, len(t.counts))
	for k, c := range t.counts {
		out = append(out, Counter{
			Rule: k.rule, Action: k.action, Profile: k.profile,
			Opened: c.opened, Refused: c.refused, Closed: c.closed,
			Sent: c.sent + c.liveSent, Received: c.received + c.liveReceived,
		})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Counter) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Action, b.Action), cmp.Compare(a.Profile, b.Profile))
	})
	return out
}

// publish sends an event about the flow, if anyone listens.
func (r *Router) publish(fe *flowEntry, kind, phase, reason string) {
	p := r.opts.Events
	if p == nil || !p.Active() {
		return
	}
	f := new(state.Flow)
	fe.fill(f, phase)
	e := state.Event{Event: kind, Time: time.Now(), Flow: f, Reason: reason}
	if kind == state.EventClose {
		e.Duration = e.Time.Sub(fe.start)
	}
	p.Publish(e)
}

// refuse ends a flow that never opened.
func (r *Router) refuse(fe *flowEntry, reason string) {
	r.table.remove(fe, true)
	r.publish(fe, state.EventClose, state.FlowClosed, reason)
}
