package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Inbound is a connection that came to one of shunt's listeners (a SOCKS
// or HTTP proxy, a static tunnel) rather than through the capture. It is
// decided and carried as a captured flow is, and is in the flow table the
// same way.
type Inbound struct {
	// Src is the client's address and Local the listener's, the two ends
	// of the client's socket: the owner lookup finds the application by
	// them.
	Src, Local netip.AddrPort
	// Dst is the destination the client asked for. When the client gave
	// a name, Host holds it and only Dst's port counts: the name is never
	// looked up here; the rules match it by name and the tunnel opens it
	// by name, so the SSH server resolves it (a direct flow resolves it
	// as any local program would).
	Dst  netip.AddrPort
	Host string
	// Via names the listener, for the log and the flow table ("socks
	// 127.0.0.1:1080").
	Via string
	// Rule, when set, decides the flow instead of the rules: a static
	// tunnel's own tunnel rule (its profile, and the users its profile
	// carries).
	Rule *Rule
}

// RefusalKind is why a flow was refused, in the terms a proxy's client
// understands.
type RefusalKind int

const (
	// RefusedFailed: anything else (the tunnel could not be set up, a
	// limit, a reset).
	RefusedFailed RefusalKind = iota
	// RefusedBlocked: a rule blocks the flow, or its profile does not
	// carry its user's flows.
	RefusedBlocked
	// RefusedByDestination: the destination refused the connection (or
	// the SSH server refused the channel).
	RefusedByDestination
	// RefusedUnreachable: the destination could not be reached (no route,
	// no such name, the SSH server could not connect to it).
	RefusedUnreachable
	// RefusedTimeout: the connection was not made in time.
	RefusedTimeout
)

func (k RefusalKind) String() string {
	switch k {
	case RefusedBlocked:
		return "blocked"
	case RefusedByDestination:
		return "refused"
	case RefusedUnreachable:
		return "unreachable"
	case RefusedTimeout:
		return "timeout"
	}
	return "failed"
}

// Refused is HandleInbound's error: the flow was not set up, and why.
type Refused struct {
	Kind RefusalKind
	// Reason is the flow's close reason, as its close event says.
	Reason string
	// Err is the upstream's error, when there was one.
	Err error
}

func (e *Refused) Error() string { return e.Reason }
func (e *Refused) Unwrap() error { return e.Err }

// DestinationError is an upstream error that says whether the destination
// refused the connection (true) or could not be reached (false): the
// broker's refused channel is one.
type DestinationError interface {
	error
	DestinationRefused() bool
}

// upstreamRefusal classifies the error of an upstream dial.
func upstreamRefusal(err error, timedOut bool) RefusalKind {
	var de DestinationError
	var dns *net.DNSError
	switch {
	case errors.As(err, &de):
		if de.DestinationRefused() {
			return RefusedByDestination
		}
		return RefusedUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return RefusedByDestination
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.As(err, &dns):
		return RefusedUnreachable
	case timedOut, errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return RefusedTimeout
	}
	return RefusedFailed
}

// HandleInbound decides and carries a connection a listener accepted, as
// HandleTCP does a captured one: it dials the upstream, then calls accept
// (which tells the client it is connected and returns its connection) and
// joins the two. It returns once the flow is set up (nil) or refused (a
// *Refused, after which accept was not called, or failed).
func (r *Router) HandleInbound(ctx context.Context, in Inbound, accept func() (net.Conn, error)) error {
	if !in.Dst.Addr().IsValid() && in.Host == "" {
		return &Refused{Kind: RefusedFailed, Reason: "no destination"}
	}
	rs := r.rules.Load()
	fl := &flowEntry{r: r, id: r.table.newID(), start: time.Now(), peer: in.Local, via: in.Via}
	// A listener's client is a socket of this host's, wherever the
	// client is: allow_from chose who may connect.
	fl.f, fl.ownerErr = r.flow(ctx, rs, in.Src, in.Dst, in.Host, in.Local, false)
	if in.Rule != nil {
		if in.Rule.Action == Tunnel && in.Rule.Profile == "" {
			return &Refused{Kind: RefusedFailed, Reason: fmt.Sprintf("%s: a tunnel without a profile", in.Via)}
		}
		fl.d = Decision{Action: in.Rule.Action, Rule: in.Rule, Index: -1}
		fl.rule = in.Rule.Source
		if fl.rule == "" {
			fl.rule = in.Via
		}
		if in.Rule.needsOwner() && fl.f.Owner == nil && fl.ownerErr == nil {
			fl.ownerErr = r.lookupOwner(ctx, &fl.f, fl.peer)
		}
	} else {
		fl.d = rs.Decide(fl.f)
		fl.rule = rs.label(fl.d.Index)
	}
	if carry := r.setUp(ctx, rs, fl, accept); carry != nil {
		go carry()
	}
	if fl.refusal != nil {
		return fl.refusal
	}
	return nil
}
