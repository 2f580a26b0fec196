package engine

// The engine as a running shunt that others ask and tell: its live state,
// its events, and the changes the control socket asks for (control.Backend).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/events"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/state"
)

// live is what the engine keeps for those who ask: the events bus the
// router, the broker and the prompt queue publish on, the prompts nobody
// at a terminal can answer, and the stop.
type live struct {
	bus events.Bus
	// queue is the prompter when nobody can be asked at a terminal or
	// through askpass (nil otherwise): its prompts are pending in Status
	// until Answer.
	queue *prompt.Queue

	// stopping refuses new flows (gate); downCh is closed by Down.
	stopping atomic.Bool
	downOnce sync.Once
	downCh   chan struct{}

	subsMu     sync.Mutex
	subs       map[*events.Subscription]bool
	subsClosed bool
	// bytesStop ends the bytes events' ticker, which runs only while
	// subs has any; bytesDone is closed when it has returned.
	bytesStop, bytesDone chan struct{}
}

func (l *live) init() {
	l.downCh = make(chan struct{})
	l.subs = map[*events.Subscription]bool{}
}

// closeSubs ends every subscription, and those to come: the engine is
// closed.
func (l *live) closeSubs() {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	l.subsClosed = true
	for s := range l.subs {
		s.Close()
	}
	clear(l.subs)
	l.stopBytes()
}

// stopBytes stops the bytes ticker, if it runs, and waits for it; subsMu
// is held.
func (l *live) stopBytes() {
	if l.bytesStop == nil {
		return
	}
	close(l.bytesStop)
	<-l.bytesDone
	l.bytesStop, l.bytesDone = nil, nil
}

// bytesInterval is how often the bytes events come, at most.
const bytesInterval = time.Second

// publishBytes publishes, every bytesInterval until stop, a bytes event
// with the running flows whose byte counts changed since the last look
// (a new flow counts once it has sent or received something), and the
// profiles whose totals or channels did. It is the
// only cost of the counts to the engine, and runs only while someone
// subscribes: the flows' counters are atomics the splice adds to anyway.
func (e *Engine) publishBytes(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(bytesInterval)
	defer t.Stop()
	last := map[uint64]state.FlowBytes{}
	type profileKey struct{ name, via string }
	lastProfiles := map[profileKey]state.Profile{}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		// The profiles' totals (bytes, channels) move with their flows
		// but change no state: they ride along in the same event.
		var profiles []state.Profile
		nowProfiles := map[profileKey]state.Profile{}
		for _, p := range e.broker.Status() {
			if p.Retired {
				continue
			}
			k := profileKey{p.Name, p.Via}
			nowProfiles[k] = p
			if prev, seen := lastProfiles[k]; seen && (prev.Sent != p.Sent || prev.Received != p.Received ||
				prev.Channels != p.Channels || prev.Connections != p.Connections) {
				profiles = append(profiles, p)
			}
		}
		lastProfiles = nowProfiles
		flows := e.router.Flows()
		now := make(map[uint64]state.FlowBytes, len(flows))
		var changed []state.FlowBytes
		for _, f := range flows {
			fb := state.FlowBytes{ID: f.ID, Sent: f.Sent, Received: f.Received}
			now[f.ID] = fb
			prev, seen := last[f.ID]
			if (seen && prev != fb) || (!seen && (fb.Sent != 0 || fb.Received != 0)) {
				changed = append(changed, fb)
			}
		}
		last = now
		if len(changed) > 0 || len(profiles) > 0 {
			e.live.bus.Publish(state.Event{Event: state.EventBytes, Flows: changed, Profiles: profiles})
		}
	}
}

// Status is a snapshot of everything at once: whether the capture is in
// place, each profile's connections, the flows, the pending prompts.
func (e *Engine) Status() state.Status {
	e.routesMu.Lock()
	capturing := e.captureUp && !e.removed
	e.routesMu.Unlock()
	st := state.Status{
		Capture:  capturing,
		Profiles: e.broker.Status(),
		Flows:    e.router.Flows(),
		Prompts:  []state.Prompt{},
		DNS:      e.dnsStatus(),
	}
	st.Listeners = e.listeners.Load().status()
	st.NoTUN = !e.plan.Load().Config.TUN.TUNEnabled()
	if q := e.live.queue; q != nil {
		st.Prompts = q.Pending()
	}
	fillServers(&st)
	return st
}

// fillServers names the SSH server of each tunnelled flow whose router
// could not (the router knows the server only of host-from-application
// flows): the server its profile is connected to. A profile with retired
// connections (a reload changed it) has flows on two servers; they are
// left without one rather than given the wrong one.
func fillServers(st *state.Status) {
	server := map[string]string{}
	for _, p := range st.Profiles {
		switch {
		case p.Via != "":
		case p.Retired:
			server[p.Name] = "" // ambiguous
		default:
			if _, seen := server[p.Name]; !seen && p.State == state.Connected {
				server[p.Name] = p.Server
			}
		}
	}
	for i := range st.Flows {
		f := &st.Flows[i]
		if f.Server == "" && f.Profile != "" {
			f.Server = server[f.Profile]
		}
	}
}

// Flows are the flows being set up or running, by id.
func (e *Engine) Flows() []state.Flow { return e.router.Flows() }

// Counters are the flows' totals since start, by rule, action and
// profile.
func (e *Engine) Counters() []router.Counter { return e.router.Counters() }

// Events is the bus the engine's parts publish on: flows opening and
// closing, connection states, prompts.
func (e *Engine) Events() *events.Bus { return &e.live.bus }

// Subscribe returns the events from now on through a buffer of buf; a
// subscriber that falls behind loses events. While anyone subscribes, the
// events include a bytes event about once a second (state.EventBytes). cancel ends the
// subscription; Close ends them all. After Close the channel comes
// closed.
func (e *Engine) Subscribe(buf int) (<-chan state.Event, func()) {
	l := &e.live
	sub := l.bus.Subscribe(buf)
	l.subsMu.Lock()
	if l.subsClosed {
		l.subsMu.Unlock()
		sub.Close()
		return sub.C(), func() {}
	}
	l.subs[sub] = true
	if l.bytesStop == nil {
		l.bytesStop, l.bytesDone = make(chan struct{}), make(chan struct{})
		go e.publishBytes(l.bytesStop, l.bytesDone)
	}
	l.subsMu.Unlock()
	return sub.C(), func() {
		l.subsMu.Lock()
		if l.subs[sub] {
			delete(l.subs, sub)
			if len(l.subs) == 0 {
				l.stopBytes()
			}
		}
		l.subsMu.Unlock()
		sub.Close()
	}
}

// CloseFlow resets the flow with that id (router.CloseFlow); false when
// there is none.
func (e *Engine) CloseFlow(id uint64) bool { return e.router.CloseFlow(id) }

// Connect connects the profile now; it returns once a connection is up,
// the attempt failed, or ctx ended.
func (e *Engine) Connect(ctx context.Context, profile string) error {
	return e.broker.Connect(ctx, profile)
}

// Disconnect closes the profile's SSH connections, resetting their flows.
func (e *Engine) Disconnect(profile string) error { return e.broker.Disconnect(profile) }

// errNoQueue: this shunt asks its questions at a terminal or through
// askpass, so none is ever pending here.
var errNoQueue = fmt.Errorf("%w: this shunt asks at its terminal or through SSH_ASKPASS", prompt.ErrNoPrompt)

// Answer answers the pending prompt id. The answer goes to the
// connection waiting for it and nowhere else (not in the error).
func (e *Engine) Answer(id, answer string) error {
	if e.live.queue == nil {
		return errNoQueue
	}
	return e.live.queue.Answer(id, answer)
}

// Down asks the engine to stop, as SIGTERM does, and returns at once:
// Stopping is closed, and whoever runs the engine calls Stop.
func (e *Engine) Down() { e.live.downOnce.Do(func() { close(e.live.downCh) }) }

// Stopping is closed once Down is called.
func (e *Engine) Stopping() <-chan struct{} { return e.live.downCh }

// Stop stops the engine as SIGTERM and shunt down do: from now on new
// flows to captured destinations are refused (their applications get a
// refused connection; none is sent direct), the running flows get the
// configuration's shutdown_grace to finish, and then everything is
// removed, as by Close. Hurry, and the end of ctx, cut the wait short.
func (e *Engine) Stop(ctx context.Context) error {
	e.live.stopping.Store(true)
	e.Down()
	grace := e.plan.Load().Config.ShutdownGrace.D
	if n := len(e.router.Flows()); n > 0 && grace > 0 {
		e.log.WithField("shutdown_grace", grace.String()).Infof("stopping: new flows are refused; waiting for %d open flows to finish", n)
		if left := e.drain(ctx, grace); left > 0 {
			e.log.WithField("shutdown_grace", grace.String()).Warnf("stopping: %d flows still open; resetting them", left)
		}
	} else {
		e.log.Info("stopping: new flows are refused")
	}
	e.log.Info("stopping: removing routes, policy rules and the TUN device")
	return e.Close()
}

// drainPoll is how often drain looks at the flows besides their close
// events (which a full buffer may have dropped).
const drainPoll = 250 * time.Millisecond

// drain waits until no flow is open, for at most grace, or until Hurry or
// the end of ctx. It returns the flows still open.
func (e *Engine) drain(ctx context.Context, grace time.Duration) int {
	sub := e.live.bus.Subscribe(64)
	defer sub.Close()
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	poll := time.NewTicker(drainPoll)
	defer poll.Stop()
	for {
		n := len(e.router.Flows())
		if n == 0 {
			return 0
		}
		select {
		case <-sub.C():
		case <-poll.C:
		case <-deadline.C:
			return n
		case <-e.hurry:
			return n
		case <-ctx.Done():
			return n
		}
	}
}

// Alive reports whether the packet path runs: the engine is started and
// not closed, the stack is up and its device has not failed. The
// watchdog asks it.
func (e *Engine) Alive() bool {
	if !e.mu.TryLock() {
		// Start, Reload or Close holds it: ask again at the next ping
		// rather than wait here.
		return true
	}
	defer e.mu.Unlock()
	if !e.started || e.closed || e.stack == nil {
		return false
	}
	select {
	case <-e.stack.Err():
		return false
	default:
		return true
	}
}

// gate stands before the router: while the engine stops, new flows are
// refused; the application's connect fails as refused.
type gate struct {
	r        *router.Router
	stopping *atomic.Bool
	log      logrus.FieldLogger
}

// HandleTCP implements netstack.Handler.
func (g *gate) HandleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) (carry func()) {
	if g.stopping.Load() {
		f := logrus.Fields{"src": src.String(), "dst": dst.String()}
		if host != "" {
			f["host"] = host
		}
		g.log.WithFields(f).Info("flow refused: shunt is stopping")
		return nil
	}
	return g.r.StackHandler().HandleTCP(ctx, src, dst, host, accept)
}

// Backend is the engine as the control socket serves it. Its Reload reads
// the configuration again, through Deps.Load.
type Backend struct{ *Engine }

var _ control.Backend = Backend{}

// Control is the engine as control.Backend.
func (e *Engine) Control() Backend { return Backend{e} }

// Reload reads the configuration again (Deps.Load, from the same files
// as at start) and puts it in force (Engine.ReloadWith). A configuration
// with errors is refused as a whole, with every file:line problem; the
// old one stays in force.
func (b Backend) Reload(ctx context.Context, opts control.ReloadOptions) error {
	return b.Engine.ReloadFiles(ctx, ReloadOptions{ResetRemoved: opts.ResetRemoved})
}

// ReloadFiles is Backend.Reload.
func (e *Engine) ReloadFiles(ctx context.Context, opts ReloadOptions) error {
	if e.deps.Load == nil {
		return errors.New("this shunt was given no configuration files to read again")
	}
	cfg, err := e.deps.Load()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	old := e.plan.Load().Config
	if err := e.ReloadWith(cfg, opts); err != nil {
		return err
	}
	if cfg.Control.Socket != old.Control.Socket || cfg.Control.Group != old.Control.Group {
		e.log.WithFields(logrus.Fields{"socket": cfg.Control.Socket, "group": cfg.Control.Group}).Warn("control settings change at the next start")
	}
	if cfg.Console.Listen != old.Console.Listen || !slices.Equal(cfg.Console.AllowFrom, old.Console.AllowFrom) {
		e.log.WithField("listen", cfg.Console.Listen).Warn("console settings change at the next start")
	}
	if cfg.Log.Format != old.Log.Format {
		e.log.WithField("format", cfg.Log.Format).Warn("log.format changes take effect at the next start")
	}
	return nil
}
