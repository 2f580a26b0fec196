package router

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// Set-up limits.
//
// A flow's set-up runs from its SYN until its upstream is ready and the
// application's handshake is done (or either failed). While it runs it
// holds a slot: a goroutine, a pending SYN in the stack and, for a
// tunnelled flow, a channel open that makes the SSH server connect to the
// destination. A destination that never answers (a blackholed port, a host
// that is down) holds its slots until the dial times out, and spoofed SYNs
// hold theirs until the handshake bound (netstack's HandshakeTimeout). One
// global cap shared by everything let such a destination take every slot,
// and every other new flow waited behind it.
//
// So each set-up is counted under three keys, and must fit under all of
// them:
//
//   - its profile (the tunnel's profile, or "direct" for flows that go
//     direct): a server that does not answer holds only its profile's slots;
//   - its destination (address and port): a blackholed port holds only its
//     own slots, and the rest of its profile keeps going;
//   - its local user (uid), when the rules made the owner known: one user's
//     flood leaves the other users alone.
//
// A key may take another slot only while it holds fewer than remain (its
// fair share): one key alone can take at most half of what is there, n keys
// flooding together each at most 1/(n+1), and the part left free is never
// smaller than what the biggest of them holds, so a new profile or user
// always finds room. For a destination, "what remains" is its profile's
// room (the profile's bound less what it holds), not the whole: a
// destination alone takes at most a quarter of the total (and at most its
// cap), four flooding together about a fifth of their profile's half each,
// and a new destination of the same profile still finds room. What no
// bound can tell apart is a flood spread over many destinations of one
// profile by an unknown owner: it fills that profile's half, and the other
// profiles and direct flows keep the rest. The checks run from the whole
// to the part: total, profile, user, destination; the first that is full
// is the one named in the refusal. On top of the fair share, fixed caps
// bound the absolute numbers (a destination's 512 are 512 connection
// attempts at one host). A flow over any bound is refused at once (RST),
// so the application fails fast instead of retrying its SYN into a queue
// that does not move.
//
// The total, 4096, is what the stack allowed before; netstack's own cap
// (8192) sits above it as a backstop, so the router's finer limits refuse
// first.
const (
	// DefaultMaxSetups bounds the set-ups in flight in all.
	DefaultMaxSetups = 4096
	// DefaultMaxSetupsPerProfile bounds one profile's (or the direct
	// flows'): half, so that a silent SSH server leaves the other half to
	// the other profiles and to direct flows.
	DefaultMaxSetupsPerProfile = DefaultMaxSetups / 2
	// DefaultMaxSetupsPerUser bounds one local user's, when the flow's
	// owner is known.
	DefaultMaxSetupsPerUser = DefaultMaxSetups / 4
	// DefaultMaxSetupsPerDestination bounds one destination's (address
	// and port). An application opening this many connections to one port
	// at the same instant is rare (browsers open 6, a load test with 500
	// concurrent clients fits); a port that does not answer holds no more
	// than this.
	DefaultMaxSetupsPerDestination = DefaultMaxSetups / 8
)

// Limits bound the flow set-ups in flight (see DefaultMaxSetups). Zero
// fields take the defaults.
type Limits struct {
	Total, PerProfile, PerUser, PerDestination int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.Total, DefaultMaxSetups)
	def(&l.PerProfile, DefaultMaxSetupsPerProfile)
	def(&l.PerUser, DefaultMaxSetupsPerUser)
	def(&l.PerDestination, DefaultMaxSetupsPerDestination)
	return l
}

// limitLogEvery spaces the warnings about one full key: a flood is said
// once, then summed up at most this often.
const limitLogEvery = 10 * time.Second

// setupKey is what a set-up is counted under. profile "" stands for the
// direct flows (profiles always have a name).
type setupKey struct {
	profile string
	dst     netip.AddrPort
	uid     uint32
	hasUID  bool
}

// slots counts one key's set-ups, and the flows it refused since its last
// warning.
type slots struct {
	held    int
	refused int
	warned  time.Time
}

// limiter counts set-ups in flight per key. Its maps hold only keys with
// set-ups in flight, so they never outgrow the total.
type limiter struct {
	lim Limits
	now func() time.Time

	mu       sync.Mutex
	total    slots
	profiles map[string]slots
	dsts     map[netip.AddrPort]slots
	users    map[uint32]slots
}

func newLimiter(lim Limits) *limiter {
	return &limiter{
		lim:      lim.withDefaults(),
		now:      time.Now,
		profiles: map[string]slots{},
		dsts:     map[netip.AddrPort]slots{},
		users:    map[uint32]slots{},
	}
}

// refusal says which bound refused a set-up. warn is set when the refusal
// is to be logged as a warning (the first of a flood, then a summary every
// limitLogEvery); refused then counts the flows refused since the last one.
type refusal struct {
	what    string // "destination 10.1.0.7:993", "profile office", "user 1000", "all flows"
	held    int    // its set-ups in flight
	cap     int    // its fixed cap (the fair share may be lower)
	warn    bool
	refused int
}

func (r *refusal) Error() string {
	if r.what == "all flows" {
		return fmt.Sprintf("%d flow set-ups in flight, the most shunt takes at once", r.held)
	}
	return fmt.Sprintf("%s has %d flow set-ups in flight, its share now (at most %d, and fewer than the slots still free)", r.what, r.held, r.cap)
}

// acquire takes a slot for k, or says why not. A nil refusal means the
// caller must release k when the set-up ends.
func (l *limiter) acquire(k setupKey) *refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	free := l.lim.Total - l.total.held
	if free <= 0 {
		return l.refuse(&l.total, "all flows", l.lim.Total)
	}
	p := l.profiles[k.profile]
	// A profile may hold up to its cap, and fewer than what is free.
	pRoom := min(l.lim.PerProfile, free) - p.held
	if pRoom <= 0 {
		r := l.refuse(&p, profileName(k.profile), l.lim.PerProfile)
		l.profiles[k.profile] = p
		return r
	}
	var u slots
	if k.hasUID {
		u = l.users[k.uid]
		if min(l.lim.PerUser, free)-u.held <= 0 {
			r := l.refuse(&u, fmt.Sprintf("user %d", k.uid), l.lim.PerUser)
			l.users[k.uid] = u
			return r
		}
	}
	// A destination's share comes out of its profile's room.
	d := l.dsts[k.dst]
	if min(l.lim.PerDestination, pRoom)-d.held <= 0 {
		r := l.refuse(&d, "destination "+k.dst.String(), l.lim.PerDestination)
		l.dsts[k.dst] = d
		return r
	}
	l.total.held++
	p.held++
	l.profiles[k.profile] = p
	d.held++
	l.dsts[k.dst] = d
	if k.hasUID {
		u.held++
		l.users[k.uid] = u
	}
	return nil
}

// refuse counts a refusal against s.
func (l *limiter) refuse(s *slots, what string, cap int) *refusal {
	s.refused++
	r := &refusal{what: what, held: s.held, cap: cap}
	if now := l.now(); now.Sub(s.warned) >= limitLogEvery {
		r.warn, r.refused = true, s.refused
		s.warned, s.refused = now, 0
	}
	return r
}

// release gives back k's slot. It returns the flows refused since the last
// warning for keys that have no set-up left, so the end of a flood is said.
func (l *limiter) release(k setupKey) (ended []refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.held--
	if l.total.held == 0 && l.total.refused > 0 {
		ended = append(ended, refusal{what: "all flows", refused: l.total.refused})
		l.total.refused = 0
	}
	if n := put(l.profiles, k.profile); n > 0 {
		ended = append(ended, refusal{what: profileName(k.profile), refused: n})
	}
	if n := put(l.dsts, k.dst); n > 0 {
		ended = append(ended, refusal{what: "destination " + k.dst.String(), refused: n})
	}
	if n := 0; k.hasUID {
		if n = put(l.users, k.uid); n > 0 {
			ended = append(ended, refusal{what: fmt.Sprintf("user %d", k.uid), refused: n})
		}
	}
	return ended
}

// put decrements m[k], deleting it at zero; it then returns the flows k
// refused since its last warning.
func put[K comparable](m map[K]slots, k K) (refused int) {
	s := m[k]
	s.held--
	if s.held > 0 {
		m[k] = s
		return 0
	}
	delete(m, k)
	return s.refused
}

// inFlight is the number of set-ups in flight (for tests).
func (l *limiter) inFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total.held
}

func profileName(p string) string {
	if p == "" {
		return "direct flows"
	}
	return "profile " + p
}
