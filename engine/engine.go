// Package engine assembles shunt's data path from a loaded configuration:
// the TUN device, gVisor's stack (netstack), the rules (router), the SSH
// connections (broker), the capture (routes to the device) and the
// resolver of the rules' host names. shunt up runs one; tests run one on
// an in-memory device without root.
//
// New builds it, Start opens the device and routes to it, Reload swaps the
// configuration while flows run, Close removes everything. What New and
// Start opened is closed again when a later step fails.
package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/dns"
	"github.com/shunt-dev/shunt/internal/errs"
	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/netstack"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

// flowsGrace bounds how long Close waits for the flows' last log lines
// once the stack has reset them.
const flowsGrace = 2 * time.Second

// Engine is a running shunt.
type Engine struct {
	deps      Deps
	log       logrus.FieldLogger
	osCapture *osCapture // the OS's capture, when deps.Capture is it
	bypass    *platform.Bypass

	// The router and the broker outlive reloads; the live state (status,
	// flows) is read from them.
	router *router.Router
	broker *broker.Broker
	// timings are the broker's latency histograms (see Metrics).
	timings *metrics.Timings
	live    live // status, events, prompts and the stop (live.go)

	plan     atomic.Pointer[Plan]
	names    names
	owners   owners
	runCtx   context.Context
	cancel   context.CancelFunc
	hurry    chan struct{}
	hurryNow sync.Once

	// mu orders Start, Reload and Close.
	mu      sync.Mutex
	started bool
	closed  bool
	dev     tun.Device
	devName string
	stack   *netstack.Stack
	// dns is split DNS while it runs (nil when the configuration serves
	// no DNS); upstreams are the resolvers the system had.
	dns       *splitDNS
	dnsLive   atomic.Pointer[splitDNS] // dns, for Status
	upstreams *upstreams
	// watch checks the SSH connections after network changes and clock
	// jumps, while the engine runs (netwatch.go).
	watch *netWatch
	// kept are the capabilities kept after set-up, once capsDropped
	// (caps.go).
	kept        []platform.Capability
	capsDropped bool
	facts       func(*Plan) capFacts // a test's; nil: the machine's
	// memory sweeps the flows' buffers while the engine runs (memory.go).
	memory        *memoryWatch
	memoryStarted bool

	// routesMu guards the capture: the resolver's callbacks change the
	// routes too, and Hurry removes them while Close may wait elsewhere.
	routesMu  sync.Mutex
	captureUp bool
	removed   bool
	removeErr error
	removedCh chan struct{}

	// listeners are the SOCKS and HTTP proxies and static tunnels while
	// the engine runs (listen.go).
	listeners atomic.Pointer[listeners]
}

// New builds an engine for cfg, a loaded configuration, on deps. Nothing
// is opened, routed or connected until Start. It takes over deps.Device and
// deps.Capture, and closes them if it fails.
func New(cfg *config.Config, deps Deps) (_ *Engine, err error) {
	up := &upstreams{}
	if !cfg.TUN.TUNEnabled() {
		// Nothing is captured, so nothing need bypass a capture: no
		// routes, no socket marks (which need root).
		if deps.Capture == nil {
			deps.Capture = noCapture{}
		}
		if deps.Dialer == nil {
			deps.Dialer = &net.Dialer{}
		}
	}
	deps, osc, bypass, err := deps.withDefaults(up, cfg.TUN.TUNEnabled())
	defer func() {
		if err != nil {
			// Nothing else is open yet.
			if deps.Device != nil {
				deps.Device.Close()
			}
			if deps.Capture != nil {
				deps.Capture.Close()
			}
			if bypass != nil {
				bypass.Close()
			}
		}
	}()
	if err != nil {
		return nil, err
	}
	deps.Dialer = newFDDialer(deps.Dialer, deps.Log)
	plan, err := Convert(cfg)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		deps:      deps,
		log:       deps.Log,
		osCapture: osc,
		bypass:    bypass,
		hurry:     make(chan struct{}),
		removedCh: make(chan struct{}),
		dev:       deps.Device,
		upstreams: up,
	}
	e.runCtx, e.cancel = context.WithCancel(context.Background())
	e.plan.Store(plan)
	if osc != nil {
		osc.plan = e.plan.Load
	}
	e.timings = newTimings(plan.Profiles)
	e.live.init()
	// Nobody at a terminal and no askpass: the prompts wait in a queue
	// for an answer from outside (shunt auth).
	if deps.Prompter == nil {
		deps.Prompter = &prompt.Queue{}
	}
	if q, ok := deps.Prompter.(*prompt.Queue); ok {
		if q.Events == nil {
			q.Events = &e.live.bus
		}
		e.live.queue = q
	}
	var brokerDialer Dialer = deps.Dialer
	if osc != nil {
		// The kill switch exempts the addresses the broker uses.
		brokerDialer = serverDialer{Dialer: deps.Dialer, connected: osc.serverConnected}
	}
	e.broker, err = broker.New(plan.Profiles, broker.Options{
		Dialer:      brokerDialer,
		AgentSocket: deps.Getenv("SSH_AUTH_SOCK"),
		Prompter:    deps.Prompter,
		ProxyRules:  plan.ProxyRules,
		Home:        cfg.Account().Home,
		FileOwner:   SudoOwner(deps.Getenv),
		Events:      &e.live.bus,
		Timings:     e.timings,
		Log:         e.log,
	})
	if err != nil {
		e.cancel()
		return nil, err
	}
	e.router = router.New(plan.Rules, router.Options{
		Tunnels:      e.broker,
		Direct:       deps.Dialer,
		Owners:       &e.owners,
		Names:        &e.names,
		Locals:       deps.Locals,
		AlwaysDirect: cfg.AlwaysDirectApplications,
		Events:       &e.live.bus,
		Memory:       memoryOptions(cfg),
		Log:          e.log,
	})
	e.memory = newMemoryWatch(e.router, e.log)
	return e, nil
}

// Plan is the configuration in force, converted.
func (e *Engine) Plan() *Plan { return e.plan.Load() }

// Start captures: it resolves the rules' host names, opens the owner
// lookup if rules need it, opens the device, routes the captured
// destinations to it, and starts the stack. It returns once flows are
// handled; ctx bounds only the start itself. If a step fails, or ctx ends,
// everything is closed again, as by Close, and Start returns the error.
func (e *Engine) Start(ctx context.Context) (err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return errors.New("engine closed")
	case e.started:
		return errors.New("engine started already")
	}
	e.started = true
	defer func() {
		if err != nil {
			e.closeLocked()
		}
	}()
	plan := e.plan.Load()
	cfg := plan.Config
	if !cfg.TUN.TUNEnabled() {
		return e.startWithoutTUN(plan)
	}
	if e.dev == nil || e.osCapture != nil {
		// The OS's rules for the device's name, before anything changes
		// (config cannot know them).
		if err := tun.CheckName(cfg.TUN.Name); err != nil {
			return cfg.TUN.Errorf("tun.name %v", err)
		}
		if err := platform.CheckPrivileges(); err != nil {
			return err
		}
	}
	logFileLimit(e.log)
	for _, sh := range plan.Ruleset.Shadowed() {
		e.log.Warn(sh.String())
	}
	if err := e.openOwners(plan); err != nil {
		return err
	}
	if e.osCapture != nil {
		if err := e.osCapture.prepareDevice(cfg.TUN.Name); err != nil {
			return err
		}
		// A crashed run's resolv.conf is put back whether or not this
		// configuration serves DNS.
		if err := platform.CleanUpDNS(platform.DNSOptions{StateDir: cfg.StateDir, Log: e.log}); err != nil {
			return err
		}
	}
	// Split DNS: the resolvers the system has now are read before
	// anything changes, and what a crashed run left is put back first.
	if cfg.DNS.Serve {
		if e.dns, err = e.openDNS(plan); err != nil {
			return err
		}
		e.names.far.Store(e.dns.server)
		e.dnsLive.Store(e.dns)
	}
	// Host names in rules: resolve them before routing, and route again
	// whenever their answers change.
	res, err := e.deps.Resolve(plan.WatchedHosts(), e.updateRoutes)
	if err != nil {
		return err
	}
	e.names.set(res)
	plan.Log(e.log, res.Addrs)
	if err := ctx.Err(); err != nil {
		return err
	}

	// The device's name is the one the OS gave it (macOS picks utunN).
	var name string
	if e.dev == nil {
		if e.dev, name, err = tun.Open(tun.Options{Name: cfg.TUN.Name, MTU: cfg.TUN.MTU}); err != nil {
			if runtime.GOOS == "linux" {
				err = fmt.Errorf("%w (shunt needs /dev/net/tun and root)", err)
			}
			return err
		}
	} else if name, err = e.dev.Name(); err != nil {
		name = cfg.TUN.Name
	}
	e.devName = name
	e.routesMu.Lock()
	if !e.removed {
		// The routes as of now: an answer may have changed meanwhile.
		err = e.deps.Capture.Up(name, e.plan.Load().routes(e.names.addrs))
		e.captureUp = err == nil
	} else {
		err = errors.New("stopping")
	}
	e.routesMu.Unlock()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	e.broker.Start(e.runCtx)
	e.watch = e.startWatch(name)
	opts := netstack.Options{MTU: cfg.TUN.MTU, Hosts: fakeHosts{&e.names.far}, Log: e.log}
	if e.stack, err = netstack.New(e.dev, &gate{r: e.router, stopping: &e.live.stopping, log: e.log}, opts); err != nil {
		return err
	}
	e.startMemory(cfg)
	if e.dns != nil {
		if err := e.dns.serve(e.stack, plan, name); err != nil {
			return err
		}
	}
	if err := e.startListeners(plan); err != nil {
		return err
	}
	// Everything that needs full root is set up.
	return e.keepCaps(plan)
}

// startWithoutTUN starts an engine whose configuration has tun.enabled
// false: no device, no routes, no DNS, nothing that needs root; only the
// listeners, the rules and the SSH connections.
func (e *Engine) startWithoutTUN(plan *Plan) error {
	logFileLimit(e.log)
	for _, sh := range plan.Ruleset.Shadowed() {
		e.log.Warn(sh.String())
	}
	if err := e.openOwners(plan); err != nil {
		return err
	}
	res, err := e.deps.Resolve(plan.WatchedHosts(), func() {})
	if err != nil {
		return err
	}
	e.names.set(res)
	plan.Log(e.log, res.Addrs)
	e.broker.Start(e.runCtx)
	e.watch = e.startWatch("")
	e.startMemory(plan.Config)
	return e.startListeners(plan)
}

// openOwners opens the owner lookup when plan's rules need one and none is
// open.
func (e *Engine) openOwners(plan *Plan) error {
	if !plan.needsOwner() || e.owners.get() != nil {
		return nil
	}
	ol, err := e.deps.Owners(e.log)
	if err != nil {
		return fmt.Errorf("rules name applications or users, or profiles carry only their allowed_users' flows, but flows cannot be traced to processes here (allowed_users: any on every profile needs no tracing): %w", err)
	}
	e.owners.set(platformOwners{ol})
	return nil
}

// Err delivers the device's error if it fails while the engine runs (the
// TUN removed under it). Nil before Start.
func (e *Engine) Err() <-chan error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stack == nil {
		return nil
	}
	return e.stack.Err()
}

// updateRoutes routes what the plan in force captures with the answers in
// force. Only the difference changes (Capture.SetRoutes).
func (e *Engine) updateRoutes() {
	if err := e.setRoutes(); err != nil {
		e.log.WithError(err).Error("updating routes after a DNS change")
	}
}

func (e *Engine) setRoutes() error {
	e.routesMu.Lock()
	defer e.routesMu.Unlock()
	if !e.captureUp {
		return nil
	}
	return e.deps.Capture.SetRoutes(e.plan.Load().routes(e.names.addrs))
}

// Explain says what the engine does with a flow now: whether its
// destination is captured, which rule decides it and why, and how a tunnel
// reaches its SSH server.
func (e *Engine) Explain(f router.Flow) Explanation {
	return e.plan.Load().Explain(f, e.names.addrs)
}

// Hurry removes the capture at once, without waiting for open flows, and
// cuts short the waits of Close, running or to come: a second stop
// signal. It may be called from any goroutine, any number of times.
func (e *Engine) Hurry() {
	e.hurryNow.Do(func() { close(e.hurry) })
	e.removeCapture()
}

// Removed is closed once the capture is removed (by Close or Hurry), or
// once Close finds none to remove: after it, no route points at the device.
func (e *Engine) Removed() <-chan struct{} { return e.removedCh }

// removeCapture removes the routes and policy rules, once.
func (e *Engine) removeCapture() {
	e.routesMu.Lock()
	defer e.routesMu.Unlock()
	if e.removed {
		return
	}
	e.removed = true
	// The system's resolver first: it must not point at a server that
	// is about to lose its route.
	var dnsErr error
	if e.dns != nil {
		dnsErr = e.dns.restore()
	}
	e.removeErr = errs.Join(e.deps.Capture.Close(), dnsErr)
	e.captureUp = false
	close(e.removedCh)
	if e.removeErr != nil {
		e.removeErr = fmt.Errorf("removing routes: %w", e.removeErr)
	}
	if e.plan.Load().Config.KillSwitch && e.osCapture != nil {
		e.log.Debug("routes to the device removed; the kill switch keeps the captured destinations unreachable")
	} else {
		e.log.Debug("routes and policy rules removed")
	}
}

// Close stops the engine and removes everything, in order: the stack
// (which resets the flows and closes the device), the owner lookup, the
// SSH connections, the capture, the resolver. It waits a moment for the
// flows' last log lines, unless Hurry was called. A second Close does
// nothing.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closeLocked()
}

func (e *Engine) closeLocked() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.cancel()
	// No new client first; the flows they set up are the router's.
	e.listeners.Load().close()
	var errList []error
	if e.stack != nil {
		e.stack.Close()
		// Closing the stack reset the flows; give their last log lines
		// a moment.
		flowsDone := make(chan struct{})
		go func() { e.router.Wait(); close(flowsDone) }()
		select {
		case <-flowsDone:
		case <-e.hurry:
		case <-time.After(flowsGrace):
		}
		e.log.Debug("network stack and TUN device closed")
	} else if e.dev != nil {
		errList = append(errList, e.dev.Close())
	}
	if e.dns != nil {
		errList = append(errList, e.dns.close())
	}
	if ol := e.owners.get(); ol != nil {
		errList = append(errList, ol.Close())
	}
	if e.memoryStarted {
		e.memory.close()
	}
	e.watch.stop()
	errList = append(errList, e.broker.Close())
	e.watch.wait()
	e.removeCapture()
	errList = append(errList, e.removeErr)
	if r := e.names.set(nil); r != nil {
		r.Close()
	}
	e.live.closeSubs()
	errList = append(errList, e.bypass.Close())
	return errs.Join(errList...)
}

// owners stands in for the owner lookup, which Start and Reload open.
type owners struct{ p atomic.Pointer[ownerBox] }

type ownerBox struct{ ownerLookup }

func (o *owners) set(ol ownerLookup) { o.p.Store(&ownerBox{ol}) }

func (o *owners) get() ownerLookup {
	if b := o.p.Load(); b != nil {
		return b.ownerLookup
	}
	return nil
}

// errNoOwnerLookup: the router asked before Start opened the lookup.
var errNoOwnerLookup = errors.New("no owner lookup open")

func (o *owners) Lookup(ctx context.Context, src, dst netip.AddrPort) (router.Owner, error) {
	ol := o.get()
	if ol == nil {
		return router.Owner{}, errNoOwnerLookup
	}
	return ol.Lookup(ctx, src, dst)
}

// LookupUID finds the user alone (router.Owners).
func (o *owners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	ol := o.get()
	if ol == nil {
		return 0, errNoOwnerLookup
	}
	return ol.LookupUID(ctx, src, dst)
}

// names stands in for the resolver, which Reload replaces, and for the DNS
// server's answers from the far side.
type names struct {
	p   atomic.Pointer[resolverBox]
	far atomic.Pointer[dns.Server]
}

type resolverBox struct{ Resolver }

// set puts r in force and returns the resolver it replaces (nil: none).
func (n *names) set(r Resolver) Resolver {
	var b *resolverBox
	if r != nil {
		b = &resolverBox{r}
	}
	if old := n.p.Swap(b); old != nil {
		return old.Resolver
	}
	return nil
}

// addrs are host's addresses by the resolver in force.
func (n *names) addrs(host string) []netip.Addr {
	if b := n.p.Load(); b != nil {
		return b.Addrs(host)
	}
	return nil
}

// Names implements router.Names: the rules' host names that resolve to
// addr, and the names whose answers from the far side (resolve_through)
// gave addr.
func (n *names) Names(addr netip.Addr) []string {
	var out []string
	if b := n.p.Load(); b != nil {
		out = b.Resolver.Names(addr)
	}
	if s := n.far.Load(); s != nil {
		if far := s.Names(addr); len(far) > 0 {
			out = append(slices.Clip(out), far...)
		}
	}
	return out
}
