package broker

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/state"
)

// pool is a profile's SSH connections. Flows go to the least loaded one;
// ties go to the first, so light traffic keeps to one connection and opens
// no others.
type pool struct {
	b     *Broker
	p     *Profile
	log   logrus.FieldLogger
	links []*link
	// name is the profile's name, via the host-from-application server
	// the pool connects to ("" for the profile's own pool); p.Name is
	// "profile@server" then.
	name, via string

	mu    sync.Mutex  // serialises pick-and-count, so concurrent flows spread
	prune *time.Timer // forgets an unused host-from-application pool; guarded by mu
	// retired: SetProfiles replaced or removed the profile; the pool
	// takes no new flow and closes its connections as their last channel
	// ends (set under mu).
	retired atomic.Bool

	// The state as Status shows it, guarded by smu (as are the links' st,
	// server and route). smu is taken under a link's mu, never the other
	// way round, and Events.Publish is called with it held.
	smu        sync.Mutex
	state      string
	since      time.Time
	lastErr    string
	reconnects atomic.Int64

	// opensPending is the profile's channel opens in flight (see
	// pendingOpens); busyRefused counts the flows refused for them, and
	// busyLogged is when that was last logged (UnixNano).
	opensPending atomic.Int64
	busyRefused  atomic.Uint64
	busyLogged   atomic.Int64

	// secrets remembers, for reconnects, what the user typed: decrypted
	// keys and the password that worked. Only in memory, never logged.
	secretsMu sync.Mutex
	keys      map[string]ssh.Signer
	password  string
}

// newPool makes the pool of profile name's connections to p.Hosts; via is
// the host-from-application server, if the pool is one's.
func newPool(b *Broker, p *Profile, name, via string) *pool {
	pl := &pool{
		b: b, p: p, log: b.log.WithField("profile", p.Name), keys: map[string]ssh.Signer{},
		name: name, via: via, state: state.Idle, since: time.Now(),
	}
	// Until an attempt says otherwise, the server is the first host.
	var server, route string
	if len(p.Hosts) > 0 {
		server = net.JoinHostPort(p.Hosts[0], strconv.Itoa(p.Port))
		_, route = b.route(p, p.Hosts[0])
	}
	for i := range p.Connections {
		log := pl.log
		if p.Connections > 1 {
			log = log.WithField("connection", i+1)
		}
		pl.links = append(pl.links, &link{pool: pl, index: i, log: log, st: state.Idle, server: server, route: route})
	}
	return pl
}

// acquire picks the least loaded connection and counts the flow on it;
// nil when the pool is retired.
func (pl *pool) acquire() *link {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.retired.Load() {
		return nil
	}
	best := pl.links[0]
	bestLoad := best.load()
	for _, l := range pl.links[1:] {
		if n := l.load(); n < bestLoad {
			best, bestLoad = l, n
		}
	}
	best.addFlow()
	return best
}

// dialOn dials through l, which acquire chose (and counted the flow on).
func (pl *pool) dialOn(ctx context.Context, l *link, addr string) (net.Conn, error) {
	c, err := l.dial(ctx, addr)
	if err != nil {
		l.removeFlow()
		return nil, err
	}
	return c, nil
}

// close ends the pool's connections; see link.close.
func (pl *pool) close() []<-chan struct{} {
	pl.mu.Lock()
	if pl.prune != nil {
		pl.prune.Stop()
	}
	pl.mu.Unlock()
	var closed []<-chan struct{}
	for _, l := range pl.links {
		if c := l.close(); c != nil {
			closed = append(closed, c)
		}
	}
	return closed
}
