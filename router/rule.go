// Package router decides what happens to each captured flow and carries it
// out: ordered rules, first match wins, each with an action (tunnel through a
// profile, direct, or block), and a splice that copies both ways.
package router

import (
	"fmt"
	"net/netip"
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

// PortRange is an inclusive range of TCP ports; a single port has Lo == Hi.
type PortRange struct{ Lo, Hi uint16 }

func (p PortRange) contains(port uint16) bool { return p.Lo <= port && port <= p.Hi }

func (p PortRange) String() string {
	if p.Lo == p.Hi {
		return fmt.Sprint(p.Lo)
	}
	return fmt.Sprintf("%d-%d", p.Lo, p.Hi)
}

// Rule matches flows by destination and port. Empty lists match anything.
type Rule struct {
	Name         string
	Destinations []netip.Prefix
	Ports        []PortRange
	Action       Action
	// Profile names the connection profile of a Tunnel rule.
	Profile string
}

// Label is how logs name the rule: its name, or its position.
func (r *Rule) Label(index int) string {
	if r.Name != "" {
		return fmt.Sprintf("#%d %q", index+1, r.Name)
	}
	return fmt.Sprintf("#%d", index+1)
}

// Flow is what a decision looks at.
type Flow struct {
	Src, Dst netip.AddrPort
}

// matchDest reports whether dst is in one of the rule's destinations, and why
// not if it is not.
func (r *Rule) matchDest(dst netip.Addr) (bool, string) {
	if len(r.Destinations) == 0 {
		return true, "any destination"
	}
	dst = dst.Unmap()
	for _, p := range r.Destinations {
		if p.Contains(dst) {
			return true, "destination " + dst.String() + " in " + p.String()
		}
	}
	return false, "destination " + dst.String() + " not in " + joinStrings(r.Destinations)
}

func (r *Rule) matchPort(port uint16) (bool, string) {
	if len(r.Ports) == 0 {
		return true, "any port"
	}
	for _, p := range r.Ports {
		if p.contains(port) {
			return true, fmt.Sprintf("port %d in %s", port, p)
		}
	}
	return false, fmt.Sprintf("port %d not in %s", port, joinStrings(r.Ports))
}

func joinStrings[T fmt.Stringer](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = x.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Decision is the outcome for one flow.
type Decision struct {
	// Index of the matching rule, or -1 when no rule matches (the flow then
	// goes direct).
	Index  int
	Rule   *Rule
	Action Action
	// Why says, in words, why the rule matched (or that none did).
	Why string
}

// Decide returns the first rule that matches f. It is a pure function: the
// data path and `shunt explain` both call it.
func Decide(rules []Rule, f Flow) Decision {
	for i := range rules {
		r := &rules[i]
		okDest, whyDest := r.matchDest(f.Dst.Addr())
		if !okDest {
			continue
		}
		okPort, whyPort := r.matchPort(f.Dst.Port())
		if !okPort {
			continue
		}
		return Decision{Index: i, Rule: r, Action: r.Action, Why: whyDest + ", " + whyPort}
	}
	return Decision{Index: -1, Action: Direct, Why: "no rule matches"}
}

// Captured returns the destinations whose traffic must be routed to the
// TUN: those of every tunnel and block rule. A rule without destinations
// captures everything (0.0.0.0/0 and ::/0). Direct rules capture nothing on
// their own; inside a captured range they are carried out by the router.
func Captured(rules []Rule) []netip.Prefix {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, r := range rules {
		if r.Action == Direct {
			continue
		}
		if len(r.Destinations) == 0 {
			add(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			add(netip.PrefixFrom(netip.IPv6Unspecified(), 0))
			continue
		}
		for _, p := range r.Destinations {
			add(p)
		}
	}
	return out
}
