package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/internal/logs"
	"github.com/shunt-dev/shunt/state"
)

// Tunnels opens tunnelled connections: a channel to addr ("host:port")
// through the named connection profile, or, for host-from-application
// rules, through an SSH connection to server itself made with the
// profile's port, user and authentication.
type Tunnels interface {
	Dial(ctx context.Context, profile, addr string) (net.Conn, error)
	DialVia(ctx context.Context, profile, server, addr string) (net.Conn, error)
}

// Overloaded is implemented by errors of Tunnels that refused a flow at
// once because too many are waiting already (the broker's bound on channel
// opens in flight): the flow is refused as over a limit, logged at debug,
// since whoever refused it warns about the flood itself.
type Overloaded interface{ Overloaded() bool }

func overloaded(err error) bool {
	var o Overloaded
	return errors.As(err, &o) && o.Overloaded()
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

// Owners finds the process and user behind a flow: src is the local
// socket's address, dst its far end. Both lookups are given the flow's
// context, and should stop once it ends (the application gave up).
type Owners interface {
	Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error)
	// LookupUID finds the user alone, which is all the allowed_users
	// check needs; it may cost less than Lookup (Linux: no /proc).
	LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error)
}

// Names tells which host names resolve to an address (from the answers
// shunt itself got for host-name rules).
type Names interface {
	Names(addr netip.Addr) []string
}

// DefaultDialTimeout bounds how long a tunnelled flow waits for its
// upstream. The application's connect is pending for that long, then it is
// refused. (Direct flows wait as long as the kernel would have: see
// Options.ConnectTimeout.)
const DefaultDialTimeout = 30 * time.Second

// Options are the router's collaborators. Owners and Names may be nil.
type Options struct {
	Tunnels Tunnels
	// Direct connects the flows that go direct. A flow to a name
	// (Flow.Host) goes to "host:port", so Direct resolves the name
	// itself, and must ask the resolvers the system had before shunt (the
	// saved upstreams), never shunt's own DNS server: that would answer
	// with a fake address again, whose flow comes back to the TUN.
	Direct Dialer
	Owners Owners
	Names  Names
	// Locals tells this host's addresses from other hosts' (see
	// Flow.Forwarded). Nil: every flow is this host's own.
	Locals Locals
	// AlwaysDirect are applications (names or paths) whose flows go
	// direct before any rule is looked at.
	AlwaysDirect []string
	// ConnectTimeout bounds a direct connect, and no set-up lasts longer
	// (the application has given up by then). Zero: the kernel's own
	// connect timeout, from its SYN retries (see connect.go).
	ConnectTimeout time.Duration
	// Limits bound the flow set-ups in flight (see limit.go); zero fields
	// take the defaults.
	Limits Limits
	// Events, when set, receives an event as each flow opens and as it
	// closes or is refused (see Publisher).
	Events Publisher
	// Memory bounds the data the flows hold buffered (see SweepMemory).
	Memory MemoryOptions
	Log    logrus.FieldLogger
}

// Router decides each flow by the rules and carries it out. StackHandler
// is it as netstack.Handler.
type Router struct {
	rules atomic.Pointer[Ruleset]
	opts  Options
	flows sync.WaitGroup
	table flowTable
	mem   memory
	setup *limiter
	// connectWhy says where ConnectTimeout came from, for the log.
	connectWhy string
	// forwardedSeen are the sources of refused forwarded flows (sources.go).
	forwardedSeen forwardedSeen

	// DialTimeout bounds the upstream dial of each tunnelled flow.
	DialTimeout time.Duration
}

// New returns a router over rules.
func New(rules []Rule, opts Options) *Router {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	why := "the connect timeout shunt was given"
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout, why = systemConnectTimeout()
	}
	r := &Router{opts: opts, DialTimeout: DefaultDialTimeout, setup: newLimiter(opts.Limits), connectWhy: why}
	r.table.init()
	r.mem.init(opts.Memory)
	r.SetRules(rules)
	return r
}

// SetRules replaces the rules atomically. Flows already running keep going;
// new flows see the new rules.
func (r *Router) SetRules(rules []Rule) { r.rules.Store(Compile(rules, r.opts.AlwaysDirect...)) }

// SetRuleset is SetRules with the always-direct applications rs was
// compiled with, in place of Options.AlwaysDirect.
func (r *Router) SetRuleset(rs *Ruleset) { r.rules.Store(rs) }

// Rules returns the rules in force.
func (r *Router) Rules() []Rule { return r.rules.Load().Rules() }

// flow gathers what the decision needs to know about a flow. peer is the
// far end of the application's socket, which the owner lookup needs: dst
// for a captured flow, the listener's address for an inbound one.
// forwarded: another host routed the flow here (Flow.Forwarded).
func (r *Router) flow(ctx context.Context, rs *Ruleset, src, dst netip.AddrPort, host string, peer netip.AddrPort, forwarded bool) (Flow, error) {
	f := Flow{Src: src, Dst: dst, Host: host, Forwarded: forwarded}
	if r.opts.Names != nil && dst.Addr().IsValid() {
		f.Names = r.opts.Names.Names(dst.Addr().Unmap())
	}
	var err error
	// The decision looks at it; a forwarded flow has no local process.
	if rs.owner && r.opts.Owners != nil && !f.Forwarded {
		err = r.lookupOwner(ctx, &f, peer)
	}
	return f, err
}

// lookupOwner finds the process and user behind f, whose socket's far
// end is peer.
func (r *Router) lookupOwner(ctx context.Context, f *Flow, peer netip.AddrPort) error {
	if r.opts.Owners == nil {
		return errNoOwners
	}
	o, err := r.opts.Owners.Lookup(ctx, f.Src, peer)
	if err == nil {
		f.Owner = &o
	}
	return err
}

// lookupUID finds the user behind f, and only the user.
func (r *Router) lookupUID(ctx context.Context, f *Flow, peer netip.AddrPort) error {
	if r.opts.Owners == nil {
		return errNoOwners
	}
	uid, err := r.opts.Owners.LookupUID(ctx, f.Src, peer)
	if err == nil {
		f.Owner = &Owner{UID: uid}
	}
	return err
}

// errNoOwners: the router was given no owner lookup.
var errNoOwners = errors.New("no owner lookup")

// carries checks that the flow's rule may carry it (Rule.Carries), and
// refuses it, logged, if not. Only a tunnel rule that checks needs the
// owner: when the decision did not look it up, it is looked up now, so
// direct and blocked flows cost no lookup.
func (r *Router) carries(ctx context.Context, rs *Ruleset, fl *flowEntry) bool {
	rule := fl.d.Rule
	// A forwarded flow is no local user's: the rule's sources: that
	// cover it are the operator's choice of who rides on the profile.
	if rule == nil || !rule.checksCarrier() || fl.f.Forwarded {
		return true
	}
	if !rs.owner && fl.f.Owner == nil && fl.ownerErr == nil {
		fl.ownerErr = r.lookupUID(ctx, &fl.f, fl.peer)
	}
	if rule.Carries(fl.f.Owner) {
		return true
	}
	if fl.f.Owner != nil && fl.f.Owner.Exe == "" && fl.ownerErr == nil {
		// Refused by the user alone: find the application too, for the
		// log line that says whose flow was refused.
		r.lookupOwner(ctx, &fl.f, fl.peer)
	}
	msg := fmt.Sprintf("flow refused: profile %q carries only the flows of its allowed_users (uids %v)", rule.Profile, rule.AllowedUsers)
	if o := fl.f.Owner; o == nil || o.NoUID {
		msg += ", and this flow's user cannot be found; allowed_users: any lets every user's flows, traced or not, ride on the profile"
	} else {
		msg += fmt.Sprintf(", and this flow is uid %d's, whose flows would reach the far network with the profile's SSH identity; to let them, add %d to the profile's allowed_users, or name it in the rule's users:", o.UID, o.UID)
	}
	fl.log(logrus.WarnLevel, nil, msg)
	r.refuse(fl, reasonNotCarried)
	fl.refusal = &Refused{Kind: RefusedBlocked, Reason: reasonNotCarried}
	return false
}

// HandleTCP decides, dials the upstream, and only then accepts the
// application's connection and joins the two. It returns once the flow is
// set up; the flow runs on (see Join) and Wait waits for it. It is
// StackHandler's HandleTCP with the flow's upstream direction run on a
// goroutine of its own.
// From its set-up to its end the flow is in the flow table (Flows). A
// non-empty host is the name the application connected to, dst being a
// fake address that stands for it (Flow.Host): the flow is decided and
// dialled by the name.
func (r *Router) HandleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) {
	if carry := r.handleTCP(ctx, src, dst, host, accept); carry != nil {
		go carry()
	}
}

// StackHandler is the router as netstack's Handler: its HandleTCP is the
// Router's, but returns the flow's upstream direction (the splice's read
// of the upstream, which blocks while the flow is quiet) for netstack to
// run on the set-up's own goroutine, which has grown its stack already.
type StackHandler struct{ r *Router }

// StackHandler returns the router as netstack's Handler.
func (r *Router) StackHandler() StackHandler { return StackHandler{r} }

// HandleTCP implements netstack.Handler (see Router.HandleTCP).
func (h StackHandler) HandleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) (carry func()) {
	return h.r.handleTCP(ctx, src, dst, host, accept)
}

func (r *Router) handleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) (carry func()) {
	rs := r.rules.Load()
	fl := &flowEntry{r: r, id: r.table.newID(), start: time.Now(), peer: dst}
	fl.f, fl.ownerErr = r.flow(ctx, rs, src, dst, host, dst, r.forwarded(src))
	fl.d = rs.Decide(fl.f)
	fl.rule = rs.label(fl.d.Index)
	return r.setUp(ctx, rs, fl, accept)
}

// setUp carries the decided flow fl: it dials the upstream, accepts the
// application's side and joins the two. When the flow is refused,
// fl.refusal says why, and carry is nil; else carry is the flow's upstream
// direction, for the caller to run on a goroutine (joinCarry).
func (r *Router) setUp(ctx context.Context, rs *Ruleset, fl *flowEntry, accept func() (net.Conn, error)) (carry func()) {
	if fl.d.Action == Block {
		if fl.d.Rule == nil { // forwarded, and no rule's sources cover it
			r.refuseForwarded(fl)
			fl.refusal = &Refused{Kind: RefusedBlocked, Reason: reasonBlocked}
			return nil
		}
		fl.log(logrus.InfoLevel, nil, "flow blocked: refused")
		r.refuse(fl, reasonBlocked)
		fl.refusal = &Refused{Kind: RefusedBlocked, Reason: reasonBlocked}
		return nil
	}
	if !r.carries(ctx, rs, fl) {
		return nil
	}
	// The set-up holds a slot from here until the application's handshake
	// is done; a flow over the limits is refused at once (see limit.go).
	key := setupKey{dst: fl.f.Dst}
	if fl.d.Action == Tunnel {
		key.profile = fl.d.Rule.Profile
	}
	if o := fl.f.Owner; o != nil {
		key.uid, key.hasUID = o.UID, true
	}
	if ref := r.setup.acquire(key); ref != nil {
		r.logRefusal(fl, ref)
		r.refuse(fl, reasonLimit)
		fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonLimit}
		return nil
	}
	defer r.releaseSetup(key)
	timeout := r.opts.ConnectTimeout
	if fl.d.Action == Tunnel {
		timeout = min(r.DialTimeout, timeout)
	} else if fl.d.Rule == nil {
		fl.log(logrus.DebugLevel, nil, "connecting direct")
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	fl.cancel = cancel // CloseFlow cuts the dial short
	r.table.add(fl)
	up, err := r.dial(dctx, fl)
	timedOut := dctx.Err() == context.DeadlineExceeded
	cancel()
	if err != nil {
		switch {
		case fl.resetRequested():
			fl.log(logrus.InfoLevel, err, "flow refused: reset on request")
			r.refuse(fl, reasonReset)
			fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonReset}
		case timedOut && ctx.Err() == nil && fl.direct.Load():
			fl.log(logrus.WarnLevel, err, fmt.Sprintf("flow refused: direct connect timed out after %g s, as the application's own would have without shunt (%s)", timeout.Seconds(), r.connectWhy))
			r.refuse(fl, reasonTimeout)
			fl.refusal = &Refused{Kind: RefusedTimeout, Reason: reasonTimeout, Err: err}
		case overloaded(err):
			// A flood: the tunnels' own bound refused it at once, and
			// said so once (rate-limited); a line for each flow would
			// only slow the refusals of the flood down.
			fl.log(logrus.DebugLevel, err, "flow refused: the tunnel takes no more set-ups now")
			r.refuse(fl, reasonLimit)
			fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonLimit, Err: err}
		default:
			fl.log(logrus.WarnLevel, err, "flow refused: upstream failed")
			r.refuse(fl, reasonUpstream+err.Error())
			fl.refusal = &Refused{Kind: upstreamRefusal(err, timedOut), Reason: reasonUpstream + err.Error(), Err: err}
		}
		return nil
	}
	if fl.resetRequested() {
		up.Close()
		fl.log(logrus.InfoLevel, nil, "flow refused: reset on request")
		r.refuse(fl, reasonReset)
		fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonReset}
		return nil
	}
	down, err := accept()
	if err != nil {
		// The application gave up, or never was (a spoofed SYN that no
		// one ACKs, cut short by netstack's handshake bound): let go of
		// the upstream at once, so the server closes its connection.
		up.Close()
		fl.log(logrus.WarnLevel, err, "flow dropped: application handshake failed; upstream closed")
		r.refuse(fl, reasonDropped)
		fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonDropped, Err: err}
		return nil
	}
	fl.setup = time.Since(fl.start)
	if !fl.connected(down, up) {
		// Reset during the handshake.
		abort(down)
		abort(up)
		fl.log(logrus.InfoLevel, nil, "flow reset on request")
		r.refuse(fl, reasonReset)
		fl.refusal = &Refused{Kind: RefusedFailed, Reason: reasonReset}
		return nil
	}
	r.table.opened(fl)
	fl.log(logrus.InfoLevel, nil, "flow open")
	// Published before the splice starts, so it comes before the close.
	r.publish(fl, state.EventOpen, state.FlowOpen, "")
	r.flows.Add(1)
	return joinCarry(down, up, &fl.bytes, func(sent, received int64, err error) {
		defer r.flows.Done()
		reset, why := fl.end()
		fl.sent, fl.received, fl.closed = sent, received, true
		r.table.remove(fl, false)
		reason := reasonClosed
		switch {
		case reset && why == reasonMemory:
			fl.log(logrus.InfoLevel, nil, "flow reset: its application stopped reading, and the flows' buffered data was over the flow memory budget")
			reason = why
		case reset:
			fl.log(logrus.InfoLevel, nil, "flow reset on request")
			reason = reasonReset
		case err != nil && !errors.Is(err, context.Canceled):
			fl.log(logrus.InfoLevel, err, "flow closed with error")
			reason = reasonBroken + err.Error()
		default:
			fl.log(logrus.InfoLevel, nil, "flow closed")
		}
		r.publish(fl, state.EventClose, state.FlowClosed, reason)
	})
}

// Wait returns when every flow HandleTCP set up has ended.
func (r *Router) Wait() { r.flows.Wait() }

// log logs a message about the flow. The fields are built only for a
// message that is logged: most flows are logged at a level the
// configuration leaves out, and an idle flow should not pin a map of them.
func (fl *flowEntry) log(level logrus.Level, err error, msg string) {
	if !logs.Enabled(fl.r.opts.Log, level) {
		return
	}
	f := logrus.Fields{"flow": fl.id, "src": fl.f.Src.String(), "dst": fl.f.Dst.String(), "action": fl.d.Action.String()}
	if !fl.f.Dst.Addr().IsValid() {
		f["dst"] = fl.f.target()
	}
	if fl.f.Host != "" {
		f["host"] = fl.f.Host
	}
	if fl.via != "" {
		f["via"] = fl.via
	}
	if o := fl.f.Owner; o != nil {
		f["app"], f["uid"] = o.Exe, o.UID
	} else if fl.ownerErr != nil {
		f["owner_error"] = fl.ownerErr.Error()
	}
	if len(fl.f.Names) > 0 {
		f["names"] = fl.f.Names
	}
	if fl.d.Rule != nil {
		f["rule"] = fl.rule
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

// logRefusal logs a flow the set-up limits refused: at debug for each
// flow, as a warning for the first of a flood and then every
// limitLogEvery with the count.
func (r *Router) logRefusal(fl *flowEntry, ref *refusal) {
	fl.log(logrus.DebugLevel, ref, "flow refused: too many set-ups in flight")
	if !ref.warn {
		return
	}
	e := r.opts.Log.WithFields(logrus.Fields{"limit": ref.what, "in_flight": ref.held, "refused": ref.refused})
	e.Warnf("refusing new flows: %v; they get a refused connection until some of these set-ups end (a destination or server that does not answer holds them until they time out)", ref)
}

// releaseSetup ends a set-up, and says when a key that refused flows has
// none left.
func (r *Router) releaseSetup(k setupKey) {
	for _, ended := range r.setup.release(k) {
		r.opts.Log.WithFields(logrus.Fields{"limit": ended.what, "refused": ended.refused}).
			Infof("%s: no set-ups in flight any more; %d more flows were refused while it was full", ended.what, ended.refused)
	}
}

// dial opens the upstream the decision asks for: to the destination's
// address, or for a flow to a name (Flow.Host) to the name, which the SSH
// server resolves for a tunnel (and Options.Direct for a direct flow).
func (r *Router) dial(ctx context.Context, fl *flowEntry) (net.Conn, error) {
	d := fl.d
	addr := fl.f.target()
	if d.Action != Tunnel {
		fl.direct.Store(true)
		return r.opts.Direct.DialContext(ctx, "tcp", addr)
	}
	// With a fallback, the tunnel gets only part of the time, so a silent
	// server leaves enough to go direct.
	fallback := d.Rule.OnTunnelDown == TunnelDownDirect
	tctx := ctx
	if deadline, ok := ctx.Deadline(); ok && fallback {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, time.Until(deadline)/2)
		defer cancel()
	}
	var up net.Conn
	var err error
	if d.Rule.HostFromApplication {
		up, err = r.opts.Tunnels.DialVia(tctx, d.Rule.Profile, fl.f.server(), addr)
	} else {
		up, err = r.opts.Tunnels.Dial(tctx, d.Rule.Profile, addr)
	}
	var se SetupError
	setupFailed := errors.As(err, &se) && se.TunnelSetupFailed() || tctx.Err() != nil
	if err != nil && fallback && setupFailed && ctx.Err() == nil {
		fl.log(logrus.WarnLevel, err, "tunnel cannot be set up: falling back to direct, as the rule allows (on_tunnel_down: direct)")
		fl.direct.Store(true)
		return r.opts.Direct.DialContext(ctx, "tcp", addr)
	}
	return up, err
}

// target is where the flow's upstream goes, "host:port": the name for a
// flow to a name, else the destination address.
func (f *Flow) target() string {
	if f.Host != "" {
		return net.JoinHostPort(f.Host, strconv.Itoa(int(f.Dst.Port())))
	}
	return f.Dst.String()
}

// server is the SSH server of a host-from-application flow: the host the
// application connected to, by name or by address.
func (f *Flow) server() string {
	if f.Host != "" {
		return f.Host
	}
	return f.Dst.Addr().Unmap().String()
}
