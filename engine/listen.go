package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/state"
)

// Listener is a way into shunt besides the TUN, converted: a SOCKS or
// HTTP proxy whose flows the rules decide, or a static tunnel with a rule
// of its own.
type Listener struct {
	config.Listener
	// Rule decides a static tunnel's flows: a tunnel through its profile,
	// carrying the users the profile carries.
	Rule *router.Rule
}

// Listeners converts the configuration's listeners.
func Listeners(cfg *config.Config) []Listener {
	var out []Listener
	for _, l := range cfg.Listeners() {
		ll := Listener{Listener: l}
		if l.Kind == config.ListenStatic {
			ll.Rule = &router.Rule{Name: l.Name(), Action: router.Tunnel, Profile: l.Profile, Source: fmt.Sprintf("%s:%d", l.File, l.Line)}
			if p, ok := cfg.Profile(l.Profile); ok {
				ll.Rule.AllowedUsers = allowedUsers(p)
			}
		}
		out = append(out, ll)
	}
	return out
}

// connServer serves one client of a listener to the end of its set-up.
type connServer interface {
	ServeConn(ctx context.Context, c net.Conn)
}

// listening is one open listener.
type listening struct {
	Listener
	ln      net.Listener
	srv     connServer
	clients atomic.Int64 // connections accepted
	denied  atomic.Int64 // refused by allow_from
}

// listeners are the engine's open listeners.
type listeners struct {
	open   []*listening
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startListeners opens the plan's listeners and serves them until
// closeListeners. A listener that cannot open fails the start, naming the
// key that asked for it.
func (e *Engine) startListeners(plan *Plan) error {
	ctx, cancel := context.WithCancel(e.runCtx)
	ls := &listeners{cancel: cancel}
	for _, l := range plan.Listeners {
		srv, err := e.serverFor(l)
		if err != nil {
			ls.close()
			return err
		}
		ln, err := net.Listen("tcp", l.Addr.String())
		if err != nil {
			ls.close()
			return fmt.Errorf("%s:%d: %s: %w (is another program listening there?)", l.File, l.Line, l.Name(), err)
		}
		o := &listening{Listener: l, ln: ln, srv: srv}
		ls.open = append(ls.open, o)
		e.log.WithFields(logrus.Fields{"listen": ln.Addr().String(), "kind": l.Kind}).Info(o.describe())
	}
	for _, o := range ls.open {
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			e.serveListener(ctx, o)
		}()
	}
	e.listeners.Store(ls)
	return nil
}

// describe says what a listener serves, for the log at start.
func (o *listening) describe() string {
	switch o.Kind {
	case config.ListenSOCKS:
		return "serving SOCKS5 (and 4, 4a): its connections go through the rules"
	case config.ListenHTTP:
		return "serving an HTTP proxy (CONNECT and http:// forwarding): its connections go through the rules"
	}
	return fmt.Sprintf("serving a static tunnel to %s through profile %s", netJoin(o.Host, o.Port), o.Profile)
}

func netJoin(host string, port uint16) string { return net.JoinHostPort(host, fmt.Sprint(port)) }

// serveListener accepts o's clients until ctx ends or o closes. A client
// allow_from does not cover is closed at once.
func (e *Engine) serveListener(ctx context.Context, o *listening) {
	var wg sync.WaitGroup
	defer wg.Wait()
	log := e.log.WithField("listen", o.Name())
	backoff := 5 * time.Millisecond
	for {
		c, err := o.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, most likely: wait, and try again.
			log.WithError(err).Warn("accepting a client failed")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !o.allowed(c.RemoteAddr()) {
			o.denied.Add(1)
			log.WithField("client", c.RemoteAddr().String()).Info("client refused: not in allow_from")
			c.Close()
			continue
		}
		o.clients.Add(1)
		if e.live.stopping.Load() {
			log.WithField("client", c.RemoteAddr().String()).Info("client refused: shunt is stopping")
			c.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.srv.ServeConn(ctx, c)
		}()
	}
}

// allowed reports whether a client from addr may use the listener:
// loopback always, others when allow_from covers them.
func (o *listening) allowed(addr net.Addr) bool {
	ap := addrPort(addr)
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return true
	}
	for _, p := range o.AllowFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// close stops the listeners and waits for their set-ups to end; the flows
// they set up run on (the router's Wait waits for them).
func (ls *listeners) close() {
	if ls == nil {
		return
	}
	ls.cancel()
	for _, o := range ls.open {
		o.ln.Close()
	}
	ls.wg.Wait()
}

// status is the listeners as shunt status shows them.
func (ls *listeners) status() []state.Listener {
	if ls == nil {
		return nil
	}
	out := make([]state.Listener, 0, len(ls.open))
	for _, o := range ls.open {
		sl := state.Listener{Kind: o.Kind, Listen: o.ln.Addr().String(), Clients: o.clients.Load(), Denied: o.denied.Load()}
		if o.Kind == config.ListenStatic {
			sl.Destination, sl.Profile = netJoin(o.Host, o.Port), o.Profile
		}
		for _, p := range o.AllowFrom {
			sl.AllowFrom = append(sl.AllowFrom, p.String())
		}
		out = append(out, sl)
	}
	return out
}

// staticTunnel serves a static tunnel's clients: each is a flow to the
// tunnel's destination through its profile.
type staticTunnel struct {
	r *router.Router
	l Listener
}

func (s *staticTunnel) ServeConn(ctx context.Context, c net.Conn) {
	in := router.Inbound{
		Src: addrPort(c.RemoteAddr()), Local: addrPort(c.LocalAddr()),
		Via: s.l.Name(), Rule: s.l.Rule,
	}
	if a, err := netip.ParseAddr(s.l.Host); err == nil {
		in.Dst = netip.AddrPortFrom(a.Unmap(), s.l.Port)
	} else {
		in.Dst, in.Host = netip.AddrPortFrom(netip.Addr{}, s.l.Port), s.l.Host
	}
	accepted := false
	err := s.r.HandleInbound(ctx, in, func() (net.Conn, error) { accepted = true; return c, nil })
	if err != nil && !accepted {
		// As ssh -L does when the channel is refused: the client sees the
		// connection close at once (reset: nothing was sent or received).
		if t, ok := c.(*net.TCPConn); ok {
			t.SetLinger(0)
		}
		c.Close()
	}
}

// serverFor is the server of l's clients.
func (e *Engine) serverFor(l Listener) (connServer, error) {
	switch l.Kind {
	case config.ListenStatic:
		return &staticTunnel{r: e.router, l: l}, nil
	case config.ListenSOCKS:
		return e.socksServer(l, e.plan.Load().Config.SOCKSUsers)
	case config.ListenHTTP:
		return e.httpServer(l), nil
	}
	return nil, fmt.Errorf("%s:%d: %s: unknown kind of listener", l.File, l.Line, l.Name())
}

// noCapture is the capture of an engine without a TUN: nothing to route.
type noCapture struct{}

func (noCapture) Up(string, []netip.Prefix) error { return nil }
func (noCapture) SetRoutes([]netip.Prefix) error  { return nil }
func (noCapture) Close() error                    { return nil }
