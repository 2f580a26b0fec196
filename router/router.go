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
// through the named connection profile.
type Tunnels interface {
	Dial(ctx context.Context, profile, addr string) (net.Conn, error)
}

// Dialer opens direct connections that bypass the capture (their packets
// must not come back to the TUN).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultDialTimeout bounds how long a flow waits for its upstream. The
// application's connect is pending for that long, then it is refused.
const DefaultDialTimeout = 30 * time.Second

// Router decides each flow by the rules and carries it out. It implements
// netstack.Handler.
type Router struct {
	rules   atomic.Pointer[[]Rule]
	tunnels Tunnels
	direct  Dialer
	log     logrus.FieldLogger

	// DialTimeout bounds the upstream dial of each flow.
	DialTimeout time.Duration
}

// New returns a router over rules that tunnels through t and connects
// directly through d.
func New(rules []Rule, t Tunnels, d Dialer, log logrus.FieldLogger) *Router {
	r := &Router{tunnels: t, direct: d, log: log, DialTimeout: DefaultDialTimeout}
	r.SetRules(rules)
	return r
}

// SetRules replaces the rules atomically. Flows already running keep going;
// new flows see the new rules.
func (r *Router) SetRules(rules []Rule) {
	rules = append([]Rule(nil), rules...)
	r.rules.Store(&rules)
}

// Rules returns the rules in force.
func (r *Router) Rules() []Rule { return *r.rules.Load() }

// HandleTCP implements netstack.Handler: decide, dial the upstream, and only
// then accept the application's connection and splice the two.
func (r *Router) HandleTCP(ctx context.Context, src, dst netip.AddrPort, accept func() (net.Conn, error)) {
	d := Decide(r.Rules(), Flow{Src: src, Dst: dst})
	log := r.log.WithFields(logrus.Fields{"src": src.String(), "dst": dst.String(), "action": d.Action.String()})
	if d.Rule != nil {
		log = log.WithField("rule", d.Rule.Label(d.Index))
		if d.Action == Tunnel {
			log = log.WithField("profile", d.Rule.Profile)
		}
	}
	if d.Action == Block {
		log.Info("flow blocked: refused")
		return
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.DialTimeout)
	var up net.Conn
	var err error
	if d.Action == Tunnel {
		up, err = r.tunnels.Dial(dctx, d.Rule.Profile, dst.String())
	} else {
		up, err = r.direct.DialContext(dctx, "tcp", dst.String())
	}
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
