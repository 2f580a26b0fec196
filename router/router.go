package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
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
// then accept the application's connection and splice the two.
func (r *Router) HandleTCP(ctx context.Context, src, dst netip.AddrPort, accept func() (net.Conn, error)) {
	rs := r.rules.Load()
	f, ownerErr := r.flow(rs, src, dst)
	log := r.opts.Log.WithFields(logrus.Fields{"src": src.String(), "dst": dst.String()})
	if f.Owner != nil {
		log = log.WithFields(logrus.Fields{"app": f.Owner.Exe, "uid": f.Owner.UID})
	} else if ownerErr != nil {
		log = log.WithField("owner_error", ownerErr.Error())
	}
	if len(f.Names) > 0 {
		log = log.WithField("names", f.Names)
	}
	d := rs.Decide(f)
	log = log.WithField("action", d.Action.String())
	if d.Rule != nil {
		log = log.WithField("rule", d.Rule.Label(d.Index))
		if d.Action == Tunnel {
			log = log.WithField("profile", d.Rule.Profile)
		}
	} else {
		log = log.WithField("why", d.Why)
	}
	if d.Action == Block {
		log.Info("flow blocked: refused")
		return
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.DialTimeout)
	up, err := r.dial(dctx, d, dst, log)
	cancel()
	if err != nil {
		log.WithError(err).Warn("flow refused: upstream failed")
		return
	}
	down, err := accept()
	if err != nil {
		up.Close()
		log.WithError(err).Warn("flow dropped: application handshake failed")
		return
	}
	log.WithField("setup", time.Since(start).Round(time.Microsecond).String()).Info("flow open")
	sent, received, err := Splice(down, up)
	log = log.WithFields(logrus.Fields{
		"sent":     sent,
		"received": received,
		"duration": time.Since(start).Round(time.Millisecond).String(),
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.WithError(err).Info("flow closed with error")
		return
	}
	log.Info("flow closed")
}

// dial opens the upstream the decision asks for.
func (r *Router) dial(ctx context.Context, d Decision, dst netip.AddrPort, log logrus.FieldLogger) (net.Conn, error) {
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
		log.WithError(err).Warn("tunnel cannot be set up: falling back to direct, as the rule allows")
		return r.opts.Direct.DialContext(ctx, "tcp", dst.String())
	}
	return up, err
}
