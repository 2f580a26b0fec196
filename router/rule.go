// Package router decides what happens to each captured flow and carries it
// out: ordered rules, first match wins, each with an action (tunnel through a
// profile, direct, or block), and a splice that copies both ways.
package router

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// Action is what a rule does with a flow.
type Action int

const (
	// Direct connects to the destination without a tunnel.
	Direct Action = iota
	// Tunnel carries the flow through an SSH connection profile.
	Tunnel
	// Block refuses the flow: the application sees a refused connection.
	Block
)

func (a Action) String() string {
	switch a {
	case Direct:
		return "direct"
	case Tunnel:
		return "tunnel"
	case Block:
		return "block"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction parses "tunnel", "direct" or "block".
func ParseAction(s string) (Action, error) {
	switch s {
	case "tunnel":
		return Tunnel, nil
	case "direct":
		return Direct, nil
	case "block":
		return Block, nil
	}
	return 0, fmt.Errorf("unknown action %q: use tunnel, direct or block", s)
}

// TunnelDown is what a tunnel rule does with a flow whose tunnel cannot be
// set up (no server answers, the login fails): on_tunnel_down.
type TunnelDown int

const (
	// TunnelDownBlock refuses the flow: the application sees a refused
	// connection, and nothing is sent in the clear. The default: a tunnel
	// rule fails closed.
	TunnelDownBlock TunnelDown = iota
	// TunnelDownDirect connects the flow directly, without a tunnel, and
	// logs a warning (fallback_direct).
	TunnelDownDirect
)

func (t TunnelDown) String() string {
	switch t {
	case TunnelDownBlock:
		return "block"
	case TunnelDownDirect:
		return "direct"
	}
	return fmt.Sprintf("on_tunnel_down(%d)", int(t))
}

// ParseTunnelDown parses "block" or "direct".
func ParseTunnelDown(s string) (TunnelDown, error) {
	switch s {
	case "block":
		return TunnelDownBlock, nil
	case "direct":
		return TunnelDownDirect, nil
	}
	return 0, fmt.Errorf("unknown on_tunnel_down %q: use block or direct", s)
}

// PortRange is an inclusive range of TCP ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

func (p PortRange) contains(port uint16) bool { return p.Lo <= port && port <= p.Hi }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return fmt.Sprint(p.Lo)
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

// Rule matches flows. Within a field any listed value matches; across
// fields all must match; an empty field matches anything.
type Rule struct {
	Name string
	// Sources are the client addresses and networks the rule is for
	// (ranges are given as the prefixes that cover them exactly): a flow
	// matches only when its Src is in one. Empty: any of this host's own
	// flows, and no forwarded one (Flow.Forwarded): a flow another host
	// routed through this one matches only a rule whose Sources cover it.
	Sources []netip.Prefix
	// Source is where the rule was written, "file:line", for messages
	// about it; empty when it was not read from a file.
	Source string
	// Destinations are addresses and networks (ranges are given as the
	// prefixes that cover them exactly).
	Destinations []netip.Prefix
	// Hosts are host names: a flow matches when its destination address
	// is one the name resolved to (Flow.Names), or when it goes to the
	// name itself (Flow.Host).
	Hosts []string
	// Domains are wildcard patterns, "*.corp.example": a flow matches when
	// one of its names (Flow.Names, Flow.Host) is below the domain.
	Domains []string
	Ports   []PortRange
	// Applications are executable names ("thunderbird") or absolute paths
	// ("/usr/bin/mutt").
	Applications []string
	// Users are uids.
	Users []uint32
	// AllowedUsers, for a Tunnel rule, are the uids whose flows may ride
	// on its profile's SSH identity (the profile's allowed_users): a flow
	// of another user, or of a user that cannot be found, is refused
	// (Carries). A rule that names Users carries theirs: naming them is
	// the conscious choice. Nil: every user's flows (allowed_users: any,
	// or a rule built in code); the engine always fills it from the
	// profile.
	AllowedUsers []uint32

	Action Action
	// Profile names the connection profile of a Tunnel rule.
	Profile string
	// HostFromApplication makes the SSH connection go to the destination
	// host itself instead of the profile's host.
	HostFromApplication bool
	// OnTunnelDown is what happens to a Tunnel rule's flow when its
	// tunnel cannot be set up; the zero value refuses it.
	OnTunnelDown TunnelDown
}

// Label is how logs name the rule: its position, and its name.
func (r *Rule) Label(index int) string {
	if r.Name != "" {
		return fmt.Sprintf("#%d %q", index+1, r.Name)
	}
	return fmt.Sprintf("#%d", index+1)
}

// AnyDestination reports whether the rule leaves the destination open
// (it names no address, network, host name or domain). A rule that names
// only host names is not open, whether or not they resolve: it matches the
// names' answers, and nothing while they have none.
func (r *Rule) AnyDestination() bool {
	return len(r.Destinations) == 0 && len(r.Hosts) == 0 && len(r.Domains) == 0
}

// Carries reports whether the rule may carry a flow of o (nil: its owner
// is unknown) over its tunnel: see AllowedUsers. Rules other than Tunnel
// carry every flow.
func (r *Rule) Carries(o *Owner) bool {
	switch {
	case r.Action != Tunnel || r.AllowedUsers == nil:
		return true
	case o == nil || o.NoUID:
		return false
	case len(r.Users) > 0:
		return slices.Contains(r.Users, o.UID)
	}
	return slices.Contains(r.AllowedUsers, o.UID)
}

// checksCarrier reports whether Carries needs the flow's user.
func (r *Rule) checksCarrier() bool { return r.Action == Tunnel && r.AllowedUsers != nil }

// needsOwner reports whether matching needs the flow's process and user.
func (r *Rule) needsOwner() bool { return len(r.Applications) > 0 || len(r.Users) > 0 }

// Flow is what a decision looks at.
type Flow struct {
	Src, Dst netip.AddrPort
	// Forwarded means the flow came from another host, which routed it
	// through this one (IP forwarding): Src is none of this host's own
	// addresses. A forwarded flow matches only rules whose Sources cover
	// Src, and with none it is refused (a LAN gateway serves nobody the
	// operator has not named).
	Forwarded bool
	// Names are host names known to resolve to Dst's address. They count
	// only with a valid Dst: a name without an address is no answer, and
	// matches no rule.
	Names []string
	// Host is the name the application connected to, carried by a fake
	// IP (Dst is then that fake address, or none): the decision matches
	// host and domain rules against it, and the tunnel opens Host at
	// Dst's port, so the SSH server resolves it. Dst is no real address
	// then: a flow with a Host never matches a rule by its networks.
	// Empty for a flow to a real address.
	Host string
	// Owner is the local process behind the flow, when known.
	Owner *Owner
}

// Owner is the process and user behind a flow.
// An empty Exe and Name mean the executable is unknown (the process exited
// before it was looked up); rules that name applications do not match then.
type Owner struct {
	UID  uint32
	Exe  string // absolute path
	Name string // executable name
	// NoUID means the user is unknown (shunt explain --app without
	// --user): rules that name users do not match, uid 0 included.
	NoUID bool
}

// match reports whether the rule matches f. With explain it also says why
// (or why not) in words; without, it builds no strings and allocates
// nothing (the data path). Decide and Explain both use it.
func (r *Rule) match(f *Flow, explain bool) (bool, string) {
	ok, src := r.matchSource(f, explain)
	if !ok {
		return false, src
	}
	ok, dest := r.matchDest(f, explain)
	if !ok {
		return false, dest
	}
	ok, port := r.matchPort(f.Dst.Port(), explain)
	if !ok {
		return false, port
	}
	var app, usr string
	if len(r.Applications) > 0 {
		if ok, app = r.matchApp(f.Owner, explain); !ok {
			return false, app
		}
	}
	if len(r.Users) > 0 {
		if ok, usr = r.matchUser(f.Owner, explain); !ok {
			return false, usr
		}
	}
	if !explain {
		return true, ""
	}
	why := dest + ", " + port
	if src != "" {
		why = src + ", " + why
	}
	for _, w := range [...]string{app, usr} {
		if w != "" {
			why += ", " + w
		}
	}
	return true, why
}

// matchSource checks the flow's source against Sources, and a forwarded
// flow against a rule without them. A rule without Sources says nothing
// about a local flow's source ("").
func (r *Rule) matchSource(f *Flow, explain bool) (bool, string) {
	if len(r.Sources) == 0 {
		if !f.Forwarded {
			return true, ""
		}
		if !explain {
			return false, ""
		}
		return false, "flow forwarded from " + f.Src.Addr().Unmap().String() + " (another host): only rules with sources: covering it match it"
	}
	src := f.Src.Addr().Unmap()
	for _, p := range r.Sources {
		if p.Contains(src) {
			if !explain {
				return true, ""
			}
			return true, "source " + src.String() + " in " + p.String()
		}
	}
	if !explain {
		return false, ""
	}
	if !src.IsValid() {
		return false, "source unknown: the rule is only for sources " + joinStrings(r.Sources) + " (explain --from ADDR gives one)"
	}
	return false, "source " + src.String() + " not in " + joinStrings(r.Sources)
}

func (r *Rule) matchDest(f *Flow, explain bool) (bool, string) {
	if r.AnyDestination() {
		return true, "any destination"
	}
	dst := f.Dst.Addr().Unmap()
	if f.Host != "" {
		// The fake address means nothing beyond shunt: only the name
		// counts, never the rule's networks.
		if ok, why := r.matchName(f, f.Host, explain); ok {
			return true, why
		}
	} else if !dst.IsValid() {
		if !explain {
			return false, ""
		}
		return false, "destination has no address"
	} else {
		for _, p := range r.Destinations {
			if p.Contains(dst) {
				if !explain {
					return true, ""
				}
				return true, "destination " + dst.String() + " in " + p.String()
			}
		}
	}
	if dst.IsValid() {
		for _, n := range f.Names {
			if ok, why := r.matchName(f, n, explain); ok {
				return true, why
			}
		}
	}
	if !explain {
		return false, ""
	}
	what := describeDest(f)
	var want []string
	if f.Host == "" {
		for _, p := range r.Destinations {
			want = append(want, p.String())
		}
	}
	want = append(append(want, r.Hosts...), r.Domains...)
	if f.Host != "" && len(r.Destinations) > 0 {
		nets := joinStrings(r.Destinations)
		if len(want) == 0 {
			return false, "destination " + what + " is a name: it matches no network " + nets
		}
		return false, "destination " + what + " not in [" + strings.Join(want, " ") + "], and a name matches no network " + nets
	}
	return false, "destination " + what + " not in [" + strings.Join(want, " ") + "]"
}

// matchName matches one of the flow's names against the rule's host names
// and domains.
func (r *Rule) matchName(f *Flow, n string, explain bool) (bool, string) {
	n = canonicalName(n)
	for _, h := range r.Hosts {
		if n == h {
			if !explain {
				return true, ""
			}
			return true, fmt.Sprintf("destination %s is %s", destAddr(f), h)
		}
	}
	for _, d := range r.Domains {
		if matchDomain(d, n) {
			if !explain {
				return true, ""
			}
			return true, fmt.Sprintf("destination %s is %s, in %s", destAddr(f), n, d)
		}
	}
	return false, ""
}

// destAddr names the flow's destination in a reason that a name of it
// matched: its address, or for a flow to a name "mail.corp.example (fake
// 198.18.0.3)".
func destAddr(f *Flow) string {
	dst := f.Dst.Addr().Unmap()
	if f.Host == "" {
		return dst.String()
	}
	if !dst.IsValid() {
		return f.Host
	}
	return f.Host + " (fake " + dst.String() + ")"
}

// describeDest names the flow's destination in a reason that it did not
// match: destAddr, with the names known for the address.
func describeDest(f *Flow) string {
	what := destAddr(f)
	if len(f.Names) > 0 && f.Dst.Addr().IsValid() {
		what += " (" + strings.Join(f.Names, ", ") + ")"
	}
	return what
}

func (r *Rule) matchPort(port uint16, explain bool) (bool, string) {
	if len(r.Ports) == 0 {
		return true, "any port"
	}
	for _, p := range r.Ports {
		if p.contains(port) {
			if !explain {
				return true, ""
			}
			return true, fmt.Sprintf("port %d in %s", port, p)
		}
	}
	if !explain {
		return false, ""
	}
	return false, fmt.Sprintf("port %d not in %s", port, joinStrings(r.Ports))
}

func (r *Rule) matchApp(o *Owner, explain bool) (bool, string) {
	if o == nil || o.Exe == "" && o.Name == "" {
		// The user is known, the executable not (the process exited,
		// or only --user was given to explain).
		return false, "application unknown"
	}
	for _, a := range r.Applications {
		if MatchApplication(a, o) {
			if !explain {
				return true, ""
			}
			return true, "application " + o.Exe + " is " + a
		}
	}
	if !explain {
		return false, ""
	}
	return false, fmt.Sprintf("application %s not in [%s]", o.Exe, strings.Join(r.Applications, " "))
}

func (r *Rule) matchUser(o *Owner, explain bool) (bool, string) {
	if o == nil || o.NoUID {
		return false, "user unknown"
	}
	if slices.Contains(r.Users, o.UID) {
		if !explain {
			return true, ""
		}
		return true, fmt.Sprintf("uid %d", o.UID)
	}
	if !explain {
		return false, ""
	}
	return false, fmt.Sprintf("uid %d not in %v", o.UID, r.Users)
}

// MatchApplication reports whether the pattern names the owner's
// executable: an absolute path matches that path, a name matches the
// executable's base name.
func MatchApplication(pattern string, o *Owner) bool {
	if filepath.IsAbs(pattern) {
		return o.Exe == pattern
	}
	return o.Name == pattern || filepath.Base(o.Exe) == pattern
}

// canonicalName lowercases a host name and drops a trailing dot.
func canonicalName(n string) string { return strings.TrimSuffix(strings.ToLower(n), ".") }

// matchDomain matches "*.corp.example" against names below corp.example.
func matchDomain(pattern, name string) bool {
	suffix := strings.TrimPrefix(pattern, "*")
	return strings.HasSuffix(name, suffix) && len(name) > len(suffix)
}

func joinStrings[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
