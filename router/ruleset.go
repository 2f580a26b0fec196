package router

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"
)

// Ruleset is an ordered rule list compiled for matching: the address part
// of a decision costs a prefix-table lookup, not a pass over every rule.
// A Ruleset is immutable; Router swaps whole Rulesets.
type Ruleset struct {
	rules        []Rule
	labels       []string // Label of each rule, made once for the flow table
	alwaysDirect []string

	prefixes *bart.Table[[]int32] // destination prefix → rules naming it
	open     []int32              // rules with no destination constraint
	hosts    map[string][]int32   // host name → rules naming it
	domains  map[string][]int32   // ".corp.example" → rules with *.corp.example
	owner    bool                 // some rule looks at applications or users
	carrier  bool                 // some tunnel rule checks whose flow it is (Rule.Carries)
	sources  bool                 // some rule names sources (Rule.Sources)
}

// Compile indexes rules. The rules are copied. Flows of the alwaysDirect
// applications (names or paths) go direct before any rule is looked at.
func Compile(rules []Rule, alwaysDirect ...string) *Ruleset {
	rs := &Ruleset{
		rules:        slices.Clone(rules),
		labels:       make([]string, len(rules)),
		alwaysDirect: slices.Clone(alwaysDirect),
		owner:        len(alwaysDirect) > 0,
		prefixes:     &bart.Table[[]int32]{},
		hosts:        map[string][]int32{},
		domains:      map[string][]int32{},
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		idx := int32(i)
		rs.labels[i] = r.Label(i)
		rs.owner = rs.owner || r.needsOwner()
		rs.carrier = rs.carrier || r.checksCarrier()
		rs.sources = rs.sources || len(r.Sources) > 0
		if r.AnyDestination() {
			rs.open = append(rs.open, idx)
			continue
		}
		for _, p := range r.Destinations {
			p = p.Masked()
			rs.prefixes.Modify(p, func(v []int32, _ bool) ([]int32, bool) {
				if len(v) == 0 || v[len(v)-1] != idx {
					v = append(v, idx)
				}
				return v, false
			})
		}
		for _, h := range r.Hosts {
			h = canonicalName(h)
			rs.hosts[h] = appendOnce(rs.hosts[h], idx)
		}
		for _, d := range r.Domains {
			s := strings.TrimPrefix(canonicalName(d), "*")
			rs.domains[s] = appendOnce(rs.domains[s], idx)
		}
	}
	return rs
}

func appendOnce(s []int32, i int32) []int32 {
	if len(s) == 0 || s[len(s)-1] != i {
		return append(s, i)
	}
	return s
}

// Rules returns the rules (do not modify them).
func (rs *Ruleset) Rules() []Rule { return rs.rules }

// label is rule i's Label, "" for -1 (no rule).
func (rs *Ruleset) label(i int) string {
	if i < 0 {
		return ""
	}
	return rs.labels[i]
}

// NeedsOwner reports whether decisions look at the flow's process or user,
// or a tunnel rule checks whose flow it carries (Rule.Carries), so the
// caller knows whether to open an owner lookup.
func (rs *Ruleset) NeedsOwner() bool { return rs.owner || rs.carrier }

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

// candidates returns, in rule order, the rules whose destination part can
// match f; only they need a full check.
func (rs *Ruleset) candidates(f *Flow, buf []int32) []int32 {
	c := append(buf[:0], rs.open...)
	if f.Host != "" {
		c = rs.nameCandidates(c, f.Host)
	}
	dst := f.Dst.Addr().Unmap()
	if dst.IsValid() {
		if f.Host == "" {
			// A flow to a name has a fake address: no rule's
			// network is meant by it.
			for _, v := range rs.prefixes.Supernets(netip.PrefixFrom(dst, dst.BitLen())) {
				c = append(c, v...)
			}
		}
		// Names are answers for an address; without one they are none.
		for _, n := range f.Names {
			c = rs.nameCandidates(c, n)
		}
	}
	slices.Sort(c)
	return slices.Compact(c)
}

// nameCandidates appends the rules that name n or a domain above it.
func (rs *Ruleset) nameCandidates(c []int32, n string) []int32 {
	n = canonicalName(n)
	c = append(c, rs.hosts[n]...)
	for i := 0; i < len(n); i++ {
		if n[i] == '.' {
			c = append(c, rs.domains[n[i:]]...)
		}
	}
	return c
}

// Decide returns the first rule that matches f. It is a pure function: the
// data path and `shunt explain` both call it. Why is filled in only for
// flows no rule matches; Explain says why a rule matched.
func (rs *Ruleset) Decide(f Flow) Decision {
	return rs.decide(&f, false)
}

func (rs *Ruleset) decide(f *Flow, explain bool) Decision {
	if f.Owner != nil {
		for _, a := range rs.alwaysDirect {
			if MatchApplication(a, f.Owner) {
				why := "application is always direct" // the data path logs the application beside it
				if explain {
					why = "application " + f.Owner.Exe + " is always direct (" + a + ")"
				}
				return Decision{Index: -1, Action: Direct, Why: why}
			}
		}
	}
	// A forwarded flow matches only rules with sources: with none, no
	// rule needs a look.
	if !f.Forwarded || rs.sources {
		var buf [16]int32
		for _, i := range rs.candidates(f, buf[:0]) {
			r := &rs.rules[i]
			if ok, why := r.match(f, explain); ok {
				return Decision{Index: int(i), Rule: r, Action: r.Action, Why: why}
			}
		}
	}
	if f.Forwarded {
		return Decision{Index: -1, Action: Block, Why: forwardedWhy(f, explain)}
	}
	return Decision{Index: -1, Action: Direct, Why: "no rule matches: direct"}
}

// forwardedWhy says why a forwarded flow that no rule matches is refused;
// the data path's words are fixed (its log line names the source), so
// that deciding builds no string.
func forwardedWhy(f *Flow, explain bool) string {
	if !explain {
		return "forwarded flow from another host, and no rule's sources: cover it: refused"
	}
	src := f.Src.Addr().Unmap()
	return "forwarded flow from " + src.String() + " (another host), and no rule with sources: covering it matches: refused; add sources: [" + src.String() + "] to a rule to let it through"
}

// Step is one rule's verdict in an explanation.
type Step struct {
	Index   int    `json:"index"`
	Label   string `json:"rule"`
	Matched bool   `json:"matched"`
	Why     string `json:"why"`
}

// Explain decides f and says, for each rule up to the match, why it does
// or does not match.
func (rs *Ruleset) Explain(f Flow) (Decision, []Step) {
	d := rs.decide(&f, true)
	last := d.Index
	if last < 0 {
		last = len(rs.rules) - 1
		if strings.HasPrefix(d.Why, "application ") {
			return d, nil // always direct: no rule was looked at
		}
	}
	var steps []Step
	for i := 0; i <= last; i++ {
		r := &rs.rules[i]
		ok, why := r.match(&f, true)
		steps = append(steps, Step{Index: i + 1, Label: r.Label(i), Matched: ok && i == d.Index, Why: why})
	}
	return d, steps
}

// Captured returns the destinations whose traffic must be routed to the
// TUN: those of every tunnel and block rule, with the addresses their host
// names resolve to (resolved). A rule without any destination captures
// everything (0.0.0.0/0 and ::/0); a rule that names host names captures
// their answers only, and nothing while they have none. Direct rules
// capture nothing on their own; inside a captured range the router carries
// them out. Domain wildcards capture nothing by route: they match flows
// already captured.
func (rs *Ruleset) Captured(resolved func(host string) []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		p = p.Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for i := range rs.rules {
		r := &rs.rules[i]
		if r.Action == Direct {
			continue
		}
		if r.AnyDestination() {
			add(netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			add(netip.PrefixFrom(netip.IPv6Unspecified(), 0))
			continue
		}
		for _, p := range r.Destinations {
			add(p)
		}
		if resolved != nil {
			for _, h := range r.Hosts {
				for _, a := range resolved(h) {
					if !a.IsValid() {
						continue
					}
					a = a.Unmap()
					add(netip.PrefixFrom(a, a.BitLen()))
				}
			}
		}
	}
	return out
}

// Shadow is a rule that can never match because an earlier one covers it.
// Index and By are 0-based; Source and BySource are the rules' Source
// ("file:line"), when known.
type Shadow struct {
	Index, By        int
	Source, BySource string
}

// String says it the way config errors are said: "file:line: what".
func (s Shadow) String() string {
	msg := fmt.Sprintf("rule #%d can never match: rule #%d", s.Index+1, s.By+1)
	if s.BySource != "" {
		msg += " (" + s.BySource + ")"
	}
	msg += fmt.Sprintf(" before it matches everything it would: remove it, or move it above rule #%d if it is meant to win", s.By+1)
	if s.Source != "" {
		msg = s.Source + ": " + msg
	}
	return msg
}

// Shadowed finds rules covered by an earlier rule. It is conservative: it
// reports only rules that certainly cannot match.
func (rs *Ruleset) Shadowed() []Shadow {
	var out []Shadow
	for j := range rs.rules {
		for i := 0; i < j; i++ {
			if covers(&rs.rules[i], &rs.rules[j]) {
				out = append(out, Shadow{Index: j, By: i, Source: rs.rules[j].Source, BySource: rs.rules[i].Source})
				break
			}
		}
	}
	return out
}

// covers reports whether every flow b matches also matches a.
func covers(a, b *Rule) bool {
	return coversSources(a.Sources, b.Sources) && coversDest(a, b) && coversPorts(a.Ports, b.Ports) &&
		coversSet(a.Applications, b.Applications) && coversSet(a.Users, b.Users)
}

// coversSources reports whether every flow sources b admit, a admits: a
// rule without sources admits every local flow but no forwarded one, so it
// covers only another without them.
func coversSources(a, b []netip.Prefix) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == 0 && len(b) == 0
	}
	return coversPrefixes(a, b)
}

// coversPrefixes reports whether every prefix of b is inside one of a.
func coversPrefixes(a, b []netip.Prefix) bool {
	for _, p := range b {
		if !slices.ContainsFunc(a, func(q netip.Prefix) bool { return q.Bits() <= p.Bits() && q.Contains(p.Addr()) }) {
			return false
		}
	}
	return true
}

func coversDest(a, b *Rule) bool {
	if a.AnyDestination() {
		return true
	}
	if b.AnyDestination() {
		return false
	}
	if !coversPrefixes(a.Destinations, b.Destinations) {
		return false
	}
	inDomains := func(name string) bool {
		return slices.ContainsFunc(a.Domains, func(d string) bool { return matchDomain(d, name) })
	}
	for _, h := range b.Hosts {
		if !slices.Contains(a.Hosts, h) && !inDomains(h) {
			return false
		}
	}
	for _, d := range b.Domains {
		if !slices.Contains(a.Domains, d) && !inDomains(strings.TrimPrefix(d, "*.")) {
			return false
		}
	}
	return true
}

func coversPorts(a, b []PortRange) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, p := range b {
		if !slices.ContainsFunc(a, func(q PortRange) bool { return q.Lo <= p.Lo && p.Hi <= q.Hi }) {
			return false
		}
	}
	return true
}

func coversSet[T comparable](a, b []T) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			return false
		}
	}
	return true
}
