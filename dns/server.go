// Package dns is shunt's DNS server, the heart of split DNS. It answers
// three kinds of names:
//
//   - names that tunnel or block rules name get a fake address, from
//     ranges that are routed into the TUN; a flow to a fake address
//     carries the name (Host), so it is tunnelled by name and the far side
//     resolves it;
//   - names of resolve_through domains are asked of a resolver in the far
//     network, over DNS over TCP on a direct-tcpip channel;
//   - every other name is forwarded to the resolvers the system had,
//     through a dialer that bypasses the capture.
//
// No query for a name of the first two kinds ever reaches an upstream, for
// any type. The fake-IP table lives as long as the process and is kept in
// a state file, so that applications that cached an address keep working
// after a restart.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// Defaults of Options.
const (
	// DefaultTTL is the TTL of fake answers. Short, so that a stub
	// resolver asks again soon (each answer marks the name as in use,
	// and a changed policy takes effect within seconds), yet not zero or
	// one second, which some stubs treat as "do not cache" and then ask
	// again for every connection of a burst.
	DefaultTTL = 5 * time.Second
	// DefaultTimeout bounds each query to an upstream or the far side,
	// as glibc waits 5 seconds for each server.
	DefaultTimeout = 5 * time.Second
)

const (
	saveDelay   = 2 * time.Second  // the state file is written at most this often
	warnEvery   = 30 * time.Second // a repeated failure is logged at most this often
	maxInflight = 256              // queries waiting on an upstream or the far side
	udpSize     = 1232             // the EDNS0 size we advertise (DNS flag day 2020)
	minLearned  = 10 * time.Second // far-side addresses are remembered at least this long
	maxLearned  = 1 << 16          // addresses remembered from far-side answers
)

// ErrClosed is returned by Serve after Close.
var ErrClosed = errors.New("dns: server closed")

// Tunnels opens channels to the far side.
type Tunnels interface {
	// Dial opens a direct-tcpip channel of profile to addr ("host:port",
	// resolved on the far side). It should return once ctx is done; the
	// server answers SERVFAIL at the deadline even if it does not.
	Dial(ctx context.Context, profile, addr string) (net.Conn, error)
}

// Dialer reaches the upstream resolvers without being captured. It is
// asked for "udp" and "tcp".
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configure a Server.
type Options struct {
	// FakeRanges are the IPv4 and IPv6 ranges fake addresses come from
	// (at least one; a family without a range gets NODATA).
	FakeRanges []netip.Prefix
	// StateFile keeps the fake-IP table ("" keeps it in memory only): a
	// JSON file, replaced atomically, mode 0600.
	StateFile string
	// Upstreams are the system's resolvers from before shunt changed
	// anything; with none, forwarded names are REFUSED.
	Upstreams []netip.AddrPort
	// Dialer reaches the upstreams; nil is a plain net.Dialer.
	Dialer Dialer
	// Tunnels carries resolve_through queries; needed when the policy
	// has any.
	Tunnels Tunnels
	Policy  Policy
	// TTL of fake answers; 0 is DefaultTTL.
	TTL time.Duration
	// Timeout bounds each query to an upstream or the far side; 0 is
	// DefaultTimeout.
	Timeout time.Duration
	Log     logrus.FieldLogger
}

// Stats count queries by outcome. Each query counts once, in one of
// Fake to Malformed; NXDomain counts the answers, of any kind, that said
// the name does not exist.
type Stats struct {
	Fake      uint64 // answered from the fake-IP pool (also PTR of a fake address)
	Forwarded uint64 // answered by an upstream
	Through   uint64 // answered by a far-side resolver
	Failed    uint64 // SERVFAIL: no upstream or far-side resolver answered
	Refused   uint64 // REFUSED: no upstream, a zone transfer, a class other than IN
	Malformed uint64 // FORMERR, NOTIMP, BADVERS
	NXDomain  uint64
	Names     int // names in the fake-IP table
	Learned   int // addresses remembered from far-side answers
}

type counters struct {
	fake, forwarded, through, failed, refused, malformed, nxdomain atomic.Uint64
}

// Server is the DNS server. Its methods may be called from any goroutine.
type Server struct {
	opts    Options
	log     logrus.FieldLogger
	ttl     uint32 // seconds
	timeout time.Duration
	dialer  Dialer

	mu     sync.RWMutex
	policy *policy
	tab    *table

	epoch time.Time // the clock of entry.used counts from here

	lmu     sync.RWMutex
	learned map[netip.Addr][]learnedName
	pruneAt int

	stats counters
	slots chan struct{}
	warns warner

	ctx    context.Context // cancelled by Close: ends the queries in flight
	cancel context.CancelFunc

	smu       sync.Mutex // guards the fields below
	closed    bool
	runs      []*run
	dirty     bool
	saveTimer *time.Timer
	saving    sync.WaitGroup // the timer's save, from its start until it ends
	saveDelay time.Duration
	fileMu    sync.Mutex // one writer of the state file at a time

	now func() time.Time // for the expiry of learned names and log rate limits
}

type learnedName struct {
	name  string
	until time.Time
}

// New makes a server. It loads the state file, if any: entries outside
// the fake ranges are dropped, and a file that cannot be read as one is
// moved aside and logged, not fatal.
func New(opts Options) (*Server, error) {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	pools, err := checkRanges(opts.FakeRanges)
	if err != nil {
		return nil, err
	}
	pol, err := compile(opts.Policy)
	if err != nil {
		return nil, err
	}
	if len(pol.through) > 0 && opts.Tunnels == nil {
		return nil, errors.New("resolve_through needs tunnels to the far side")
	}
	for _, u := range opts.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return nil, fmt.Errorf("upstream %q is not an address and port", u)
		}
		for _, own := range netlayout.DNSAddrs() {
			if u.Addr().Unmap() == own {
				return nil, fmt.Errorf("upstream %v is shunt's own DNS server: queries would loop", u)
			}
		}
		for _, r := range opts.FakeRanges {
			if r.Contains(u.Addr().Unmap()) {
				return nil, fmt.Errorf("upstream %v lies in fake-IP range %v", u, r)
			}
		}
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second {
		return nil, fmt.Errorf("TTL %v is less than a second", opts.TTL)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v is negative", opts.Timeout)
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:      opts,
		log:       opts.Log,
		ttl:       uint32(opts.TTL / time.Second),
		timeout:   opts.Timeout,
		dialer:    opts.Dialer,
		policy:    pol,
		tab:       newTable(pools, maxNames),
		epoch:     time.Now(),
		learned:   map[netip.Addr][]learnedName{},
		pruneAt:   1024,
		slots:     make(chan struct{}, maxInflight),
		ctx:       ctx,
		cancel:    cancel,
		saveDelay: saveDelay,
		now:       time.Now,
	}
	s.warns.s = s
	if opts.StateFile != "" {
		s.load()
	}
	return s, nil
}

// clock returns the time on the clock of entry.used: nanoseconds since
// epoch, on the monotonic clock.
func (s *Server) clock() int64 { return int64(time.Since(s.epoch)) }

// SetPolicy changes the policy and the fake ranges, as on a reload. The
// table survives: names keep their addresses, except addresses outside
// the new ranges, which are dropped. On error nothing changes.
func (s *Server) SetPolicy(p Policy, fakeRanges []netip.Prefix) error {
	pools, err := checkRanges(fakeRanges)
	if err != nil {
		return err
	}
	pol, err := compile(p)
	if err != nil {
		return err
	}
	if len(pol.through) > 0 && s.opts.Tunnels == nil {
		return errors.New("resolve_through needs tunnels to the far side")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy = pol
	if dropped := s.tab.setRanges(pools); dropped > 0 {
		s.log.WithField("dropped", dropped).Info("fake-IP ranges changed: dropped the addresses outside them")
		s.changed()
	}
	return nil
}

// Host returns the name a fake address stands for; fake says whether a
// lies in a fake range at all (a fake address without a name is one the
// table no longer holds). A hit counts as a use of the name.
//
// It is on the flow path: a map look-up and, for a hit, a move to the
// front of the LRU list, under the lock, without allocating. The lock is
// the write lock, for an exact LRU order: held for tens of nanoseconds,
// against the microseconds a flow's set-up costs anyway.
func (s *Server) Host(a netip.Addr) (name string, fake bool) {
	a = a.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.tab.byAddr[a]; e != nil {
		s.tab.touch(e, s.clock())
		return e.name, true
	}
	return "", s.tab.inRange(a)
}

// Names returns the names behind a: the name of a fake address, or the
// names whose far-side (resolve_through) answers gave this real address,
// the queried name first, until the answer's TTL runs out.
func (s *Server) Names(a netip.Addr) []string {
	a = a.Unmap()
	s.mu.RLock()
	if e := s.tab.byAddr[a]; e != nil {
		s.mu.RUnlock()
		return []string{e.name}
	}
	s.mu.RUnlock()
	now := s.now()
	s.lmu.RLock()
	defer s.lmu.RUnlock()
	var names []string
	for _, l := range s.learned[a] {
		if now.Before(l.until) {
			names = append(names, l.name)
		}
	}
	return names
}

// Fake returns the fake addresses of name (as `shunt explain` shows
// them): those it has, or, if the policy answers it from the fake pool,
// new ones; nil otherwise.
func (s *Server) Fake(name string) []netip.Addr {
	n := canon(name)
	s.mu.Lock()
	e := s.tab.byName[n]
	v, _, _ := s.policy.match(n)
	if e != nil && (v != fake || s.tab.complete(e)) {
		s.tab.touch(e, s.clock())
		s.mu.Unlock()
		return e.addrs()
	}
	s.mu.Unlock()
	if v != fake {
		return nil
	}
	v4, v6 := s.fakeAddrs(n)
	var out []netip.Addr
	for _, a := range []netip.Addr{v4, v6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// fakeAddrs returns the fake addresses of name (canonical), assigning
// them if need be, and counts the use.
func (s *Server) fakeAddrs(name string) (a4, a6 netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, changed := s.tab.ensure(name, s.clock())
	if changed {
		s.changed()
	}
	return e.addr[v4], e.addr[v6]
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Fake:      s.stats.fake.Load(),
		Forwarded: s.stats.forwarded.Load(),
		Through:   s.stats.through.Load(),
		Failed:    s.stats.failed.Load(),
		Refused:   s.stats.refused.Load(),
		Malformed: s.stats.malformed.Load(),
		NXDomain:  s.stats.nxdomain.Load(),
	}
	s.mu.RLock()
	st.Names = len(s.tab.byName)
	s.mu.RUnlock()
	s.lmu.RLock()
	st.Learned = len(s.learned)
	s.lmu.RUnlock()
	return st
}

// A run is one miekg server started by Serve.
type run struct {
	srv     *mdns.Server
	started chan struct{}
	exited  chan struct{}
	err     error
}

// Serve answers queries on pc (UDP) and l (TCP), either of which may be
// nil, until Close; it closes both when it returns. It returns nil after
// Close, or the error that ended one of them.
func (s *Server) Serve(pc net.PacketConn, l net.Listener) error {
	var runs []*run
	mk := func(srv *mdns.Server) {
		r := &run{srv: srv, started: make(chan struct{}), exited: make(chan struct{})}
		srv.Handler = s
		srv.MsgAcceptFunc = accept
		srv.NotifyStartedFunc = func() { close(r.started) }
		runs = append(runs, r)
	}
	if pc != nil {
		mk(&mdns.Server{PacketConn: pc, UDPSize: 4096})
	}
	if l != nil {
		mk(&mdns.Server{Listener: l})
	}
	if len(runs) == 0 {
		return errors.New("dns: Serve needs a packet conn or a listener")
	}
	s.smu.Lock()
	if s.closed {
		s.smu.Unlock()
		if pc != nil {
			pc.Close()
		}
		if l != nil {
			l.Close()
		}
		return ErrClosed
	}
	s.runs = append(s.runs, runs...)
	s.smu.Unlock()

	ended := make(chan *run, len(runs))
	for _, r := range runs {
		go func() {
			r.err = r.srv.ActivateAndServe()
			close(r.exited)
			ended <- r
		}()
	}
	first := <-ended
	// One ended: by Close, or by an error; either way stop the other.
	for _, r := range runs {
		stop(r)
	}
	for range len(runs) - 1 {
		<-ended
	}
	s.smu.Lock()
	closed := s.closed
	s.smu.Unlock()
	if closed {
		return nil
	}
	for _, r := range append([]*run{first}, runs...) {
		if r.err != nil {
			return fmt.Errorf("dns: serve: %w", r.err)
		}
	}
	return nil
}

// stop shuts r down and waits until it has.
func stop(r *run) {
	select {
	case <-r.started:
		r.srv.Shutdown()
	case <-r.exited:
	}
	<-r.exited
}

// accept lets every request through to ServeDNS, which answers FORMERR
// and NOTIMP itself (miekg's default would also refuse requests with
// more than one record in a section); responses are never answered.
func accept(h mdns.Header) mdns.MsgAcceptAction {
	const qr = 1 << 15
	if h.Bits&qr != 0 {
		return mdns.MsgIgnore
	}
	return mdns.MsgAccept
}

// Close stops serving, ends the queries in flight and saves the table.
func (s *Server) Close() error {
	s.smu.Lock()
	if s.closed {
		s.smu.Unlock()
		return nil
	}
	s.closed = true
	runs := s.runs
	if s.saveTimer != nil && s.saveTimer.Stop() {
		s.saving.Done() // it will not run
	}
	s.saveTimer = nil
	s.smu.Unlock()
	s.saving.Wait()
	s.cancel()
	for _, r := range runs {
		stop(r)
	}
	if s.opts.StateFile == "" {
		return nil
	}
	return s.save()
}
