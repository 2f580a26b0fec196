package router

import (
	"net/netip"
	"sync"

	"github.com/sirupsen/logrus"
)

// Locals tells this host's own addresses from other hosts': a flow whose
// source is not local was routed through this host by another one (IP
// forwarding, a LAN gateway), and is decided as Flow.Forwarded.
type Locals interface {
	// IsLocal reports whether addr (unmapped, without a zone) is one of
	// this host's addresses: loopback, the TUN device's, any interface's.
	// It is called for every flow, so it must be cheap and safe for
	// concurrent use.
	IsLocal(addr netip.Addr) bool
}

// reasonForwarded: a forwarded flow that no rule's sources cover.
const reasonForwarded = "refused: forwarded from another host, and no rule's sources: cover it"

// maxWarnedSources bounds the sources whose refused forwarded flows were
// warned about: past it, refusals are logged at debug only.
const maxWarnedSources = 1024

// forwardedSeen remembers the sources of refused forwarded flows, so that
// each is warned about once.
type forwardedSeen struct {
	mu   sync.Mutex
	seen map[netip.Addr]struct{}
	full bool // maxWarnedSources reached, and said so
}

// first reports whether src has not been warned about yet, and records it;
// full is true once, when the bound is reached.
func (s *forwardedSeen) first(src netip.Addr) (first, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[src]; ok || s.full {
		return false, false
	}
	if s.seen == nil {
		s.seen = map[netip.Addr]struct{}{}
	}
	if len(s.seen) >= maxWarnedSources {
		s.full = true
		return false, true
	}
	s.seen[src] = struct{}{}
	return true, false
}

// forwarded reports whether a flow from src came from another host.
// Without Options.Locals every flow is this host's own.
func (r *Router) forwarded(src netip.AddrPort) bool {
	if r.opts.Locals == nil {
		return false
	}
	a := src.Addr().Unmap().WithZone("")
	return a.IsValid() && !a.IsLoopback() && !r.opts.Locals.IsLocal(a)
}

// refuseForwarded refuses a forwarded flow that no rule's sources cover:
// logged at debug, and as a warning, with the fix, for the first flow from
// each source.
func (r *Router) refuseForwarded(fl *flowEntry) {
	fl.log(logrus.DebugLevel, nil, "flow refused: forwarded from another host, and no rule's sources: cover it")
	src := fl.f.Src.Addr().Unmap()
	switch first, full := r.forwardedSeen.first(src); {
	case first:
		r.opts.Log.WithFields(logrus.Fields{"src": src.String(), "dst": fl.f.Dst.String()}).
			Warnf("refusing flows forwarded from %s: this host routes them (IP forwarding), but no rule's sources: cover %s, so shunt serves it nothing; add sources: [%s] to a rule to let it through (logged once for each source)", src, src, src)
	case full:
		r.opts.Log.Warnf("refusing flows forwarded from more than %d sources that no rule's sources: cover; the next ones are logged at debug only", maxWarnedSources)
	}
	r.refuse(fl, reasonForwarded)
}
