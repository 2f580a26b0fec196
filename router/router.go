package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Tunnels opens tunnelled connections: a channel to addr ("host:port")
// through the named connection profile, or, for host-from-application
// rules, through an SSH connection to server itself made with the
// profile's port, user and authentication.
type Tunnels interface {
	Dial(ctx context.Context, profile, addr string) (net.Conn, error)
	DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error)
}

// SetupError is implemented by errors that mean the tunnel itself could not
// be set up (server unreachable, login failed), as opposed to the server
// refusing the one destination. Only those fall back to direct.
type SetupError interface{ TunnelSetupFailed() bool }

// Dialer opens direct connections that bypass the capture (their packets
// must not come back to the TUN).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Owners finds the process and user behind a flow.
type Owners interface {
	Lookup(src, dst netip.AddrPort) (Owner, error)
}

// Names tells which host names resolve to an address (from the answers
// shunt itself got for host-name rules).
type Names interface {
	Names(addr netip.Addr) []string
}

// DefaultDialTimeout bounds how long a flow waits for its upstream. The
// application's connect is pending for that long, then it is refused.
const DefaultDialTimeout = 30 * time.Second

// Options are the router's collaborators. Owners and Names may be nil.
type Options struct {
	Tunnels Tunnels
	Direct  Dialer
	Owners  Owners
	Names   Names
	// AlwaysDirect are applications (names or paths) whose flows go
	// direct before any rule is looked at.
	AlwaysDirect []string
	Log          logrus.FieldLogger
}

// Router decides each flow by the rules and carries it out. It implements
// netstack.Handler.
type Router struct {
	rules atomic.Pointer[Ruleset]
	opts  Options
	flows sync.WaitGroup

	// DialTimeout bounds the upstream dial of each flow.
	DialTimeout time.Duration
}

// New returns a router over rules.
func New(rules []Rule, opts Options) *Router {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	r := &Router{opts: opts, DialTimeout: DefaultDialTimeout}
	r.SetRules(rules)
	return r
}

// SetRules replaces the rules atomically. Flows already running keep going;
// new flows see the new rules.
func (r *Router) SetRules(rules []Rule) { r.rules.Store(Compile(rules, r.opts.AlwaysDirect...)) }

// Rules returns the rules in force.
func (r *Router) Rules() []Rule { return r.rules.Load().Rules() }

// flow gathers what the decision needs to know about a flow.
func (r *Router) flow(rs *Ruleset, src, dst netip.AddrPort) (Flow, error) {
	f := Flow{Src: src, Dst: dst}
	if r.opts.Names != nil {
		f.Names = r.opts.Names.Names(dst.Addr().Unmap())
	}
	var err error
	if r.opts.Owners != nil && rs.NeedsOwner() {
		var o Owner
		if o, err = r.opts.Owners.Lookup(src, dst); err == nil {
			f.Owner = &o
		}
	}
	return f, err
}

// HandleTCP implements netstack.Handler: decide, dial the upstream, and only
// then accept the application's connection and join the two. It returns
// once the flow is set up; the flow runs on (see Join) and Wait waits for it.
func (r *Router) HandleTCP(ctx context.Context, src, dst netip.AddrPort, accept func() (net.Conn, error)) {
	rs := r.rules.Load()
	fl := &flowLog{r: r}
	fl.f, fl.ownerErr = r.flow(rs, src, dst)
	fl.d = rs.Decide(fl.f)
	if fl.d.Action == Block {
		fl.log(logrus.InfoLevel, nil, "flow blocked: refused")
		return
	}
	fl.start = time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.DialTimeout)
	up, err := r.dial(dctx, fl, dst)
	cancel()
	if err != nil {
		fl.log(logrus.WarnLevel, err, "flow refused: upstream failed")
		return
	}
	down, err := accept()
	if err != nil {
		up.Close()
		fl.log(logrus.WarnLevel, err, "flow dropped: application handshake failed")
		return
	}
	fl.setup = time.Since(fl.start)
	fl.log(logrus.InfoLevel, nil, "flow open")
	r.flows.Add(1)
	Join(down, up, func(sent, received int64, err error) {
		defer r.flows.Done()
		fl.sent, fl.received, fl.closed = sent, received, true
		if err != nil && !errors.Is(err, context.Canceled) {
			fl.log(logrus.InfoLevel, err, "flow closed with error")
			return
		}
		fl.log(logrus.InfoLevel, nil, "flow closed")
	})
}

// Wait returns when every flow HandleTCP set up has ended.
func (r *Router) Wait() { r.flows.Wait() }

// flowLog is what the router logs about one flow. The fields are built
// only for a message that is logged: most flows are logged at a level the
// configuration leaves out, and an idle flow should not pin a map of them.
type flowLog struct {
	r        *Router
	f        Flow
	ownerErr error
	d        Decision
	start    time.Time
	setup    time.Duration
	closed   bool
	sent     int64
	received int64
}

func (fl *flowLog) log(level logrus.Level, err error, msg string) {
	if !levelEnabled(fl.r.opts.Log, level) {
		return
	}
	f := logrus.Fields{"src": fl.f.Src.String(), "dst": fl.f.Dst.String(), "action": fl.d.Action.String()}
	if o := fl.f.Owner; o != nil {
		f["app"], f["uid"] = o.Exe, o.UID
	} else if fl.ownerErr != nil {
		f["owner_error"] = fl.ownerErr.Error()
	}
	if len(fl.f.Names) > 0 {
		f["names"] = fl.f.Names
	}
	if fl.d.Rule != nil {
		f["rule"] = fl.d.Rule.Label(fl.d.Index)
		if fl.d.Action == Tunnel {
			f["profile"] = fl.d.Rule.Profile
		}
	} else {
		f["why"] = fl.d.Why
	}
	if fl.setup > 0 {
		f["setup"] = fl.setup.Round(time.Microsecond).String()
	}
	if fl.closed {
		f["sent"], f["received"] = fl.sent, fl.received
		f["duration"] = time.Since(fl.start).Round(time.Millisecond).String()
	}
	e := fl.r.opts.Log.WithFields(f)
	if err != nil {
		e = e.WithError(err)
	}
	e.Log(level, msg)
}

// levelEnabled tells whether log would write at level (true when it cannot
// tell).
func levelEnabled(log logrus.FieldLogger, level logrus.Level) bool {
	switch l := log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(level)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(level)
	}
	return true
}

// dial opens the upstream the decision asks for.
func (r *Router) dial(ctx context.Context, fl *flowLog, dst netip.AddrPort) (net.Conn, error) {
	d := fl.d
	if d.Action != Tunnel {
		return r.opts.Direct.DialContext(ctx, "tcp", dst.String())
	}
	// With a fallback, the tunnel gets only part of the time, so a silent
	// server leaves enough to go direct.
	tctx := ctx
	if d.Rule.FallbackDirect {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, r.DialTimeout/2)
		defer cancel()
	}
	var up net.Conn
	var err error
	if d.Rule.HostFromApplication {
		up, err = r.opts.Tunnels.DialVia(tctx, d.Rule.Profile, dst.Addr().Unmap().String(), dst.String())
	} else {
		up, err = r.opts.Tunnels.Dial(tctx, d.Rule.Profile, dst.String())
	}
	var se SetupError
	setupFailed := errors.As(err, &se) && se.TunnelSetupFailed() || tctx.Err() != nil
	if err != nil && d.Rule.FallbackDirect && setupFailed && ctx.Err() == nil {
		fl.log(logrus.WarnLevel, err, "tunnel cannot be set up: falling back to direct, as the rule allows")
		return r.opts.Direct.DialContext(ctx, "tcp", dst.String())
	}
	return up, err
}
