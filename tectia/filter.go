package tectia

import (
	"fmt"
	"strconv"
	"strings"
)

type rule struct {
	n, line      int
	broken       bool
	dests        []string
	ports        []string
	action       string
	profile      *profile
	fromApp      bool
	fallback     bool
	applications []string
}

// ruleEl is a <rule> to convert, and the <network> it was written in, if
// any.
type ruleEl struct {
	e       *element
	network string
	netLine int
}

// readFilterEngine reads <filter-engine>: its rules, in order, and its
// <network> elements, Tectia's location awareness: rules that apply only
// in some network. shunt applies its rules wherever the machine is, so the
// rules tied to a network are listed, and the others convert.
func (c *converter) readFilterEngine(e *element) []ruleEl {
	var out []ruleEl
	for _, ch := range e.Children {
		switch ch.Name {
		case "rule":
			out = append(out, ruleEl{e: ch})
		case "network":
			id, _ := attrValue(ch, "id")
			id = strings.TrimSpace(id)
			if id != "" {
				if _, dup := c.networks[id]; !dup {
					c.networks[id] = ch.Line
				}
			}
			c.noText(ch)
			for _, r := range ch.Children {
				if r.Name != "rule" {
					c.problem(r.Line, "<%s> inside <network> is not understood", r.Name)
					continue
				}
				out = append(out, ruleEl{e: r, network: firstNonEmpty(id, "(no id)"), netLine: ch.Line})
			}
			c.note(ch.Line, "network %s: location awareness (rules that apply only while this machine is in a given network) has no shunt equivalent: shunt applies its rules in every network; the rules tied to this network are listed as not converted, the others convert", strconv.Quote(id))
		case "dns", "filter":
			c.problem(ch.Line, "<%s> inside <filter-engine> is an older filter format; only <rule> (and <network>) elements convert: write the rule with host or ip-address", ch.Name)
		default:
			c.problem(ch.Line, "<%s> inside <filter-engine> is not understood; only <rule> elements convert", ch.Name)
		}
	}
	return out
}

func (c *converter) readRule(n int, re ruleEl) {
	e := re.e
	r := &rule{n: n, line: e.Line}
	c.rules = append(c.rules, r)
	bad := func(line int, format string, args ...any) {
		c.problem(line, "rule %d: "+format, append([]any{n}, args...)...)
		r.broken = true
	}
	if re.network != "" {
		bad(e.Line, "applies only in network %q (line %d), and shunt has no location awareness: it would apply the rule in every network", re.network, re.netLine)
	}
	var hostDests []string
	var ipSet, hostSet bool
	var ipLine, profLine int
	var ipValue string
	var profRef string
	var appNotes []string
	var appLine int
	for _, a := range e.Attrs {
		v := strings.TrimSpace(a.Value)
		switch a.Name {
		case "ip-address":
			if v == "" {
				break // not set
			}
			// Read below: with a host too, Tectia does not look at it.
			ipSet, ipLine, ipValue = true, a.Line, a.Value
		case "host":
			if v == "" {
				break
			}
			hostSet = true
			d, any, why := hostPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			} else if !any {
				hostDests = d
			}
		case "host-name":
			bad(a.Line, "attribute host-name is not in ssh-broker-config(5): a rule's host-name pattern is its host attribute")
		case "ports":
			ports, _, why := portsPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			}
			r.ports = ports
		case "action":
			switch lv := strings.ToLower(v); lv {
			case "tunnel", "direct", "block":
				r.action = lv
			default:
				bad(a.Line, "action %q has no shunt equivalent (shunt has tunnel, direct and block)", a.Value)
				r.action = "?"
			}
		case "profile-id", "profile":
			if profLine != 0 {
				bad(a.Line, "names its profile twice")
			}
			profRef, profLine = v, a.Line
		case "hostname-from-app", "fallback-to-plain":
			b, ok := parseBool(a.Value)
			if !ok {
				bad(a.Line, "%s %q is not yes or no", a.Name, a.Value)
			}
			if a.Name == "hostname-from-app" {
				r.fromApp = b
			} else {
				r.fallback = b
			}
		case "pseudo-ip":
			b, ok := parseBool(a.Value)
			switch {
			case !ok:
				bad(a.Line, "pseudo-ip %q is not yes or no", a.Value)
			case b:
				bad(a.Line, "pseudo-ip: shunt has no pseudo IP addresses for names this machine cannot resolve")
			}
		case "destination", "destination-port":
			if v != "" {
				bad(a.Line, "%s rewrites where the connection goes, which shunt cannot do", a.Name)
			}
		case "network-id", "network":
			if v != "" {
				line, known := c.networks[v]
				if known {
					bad(a.Line, "applies only in network %q (line %d), and shunt has no location awareness: it would apply the rule in every network", v, line)
				} else {
					bad(a.Line, "applies only in network %q, which no <network> element defines", v)
				}
			}
		case "application":
			apps, _, notes, why := appPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			}
			r.applications, appNotes, appLine = apps, notes, a.Line
		default:
			bad(a.Line, "attribute %s is not understood", a.Name)
		}
	}
	if e.TextLine > 0 {
		bad(e.TextLine, "text inside <rule> is not understood")
	}
	for _, ch := range e.Children {
		bad(ch.Line, "<%s> inside <rule> is not understood", ch.Name)
	}
	var notes []Note
	switch {
	case hostSet:
		// The documented precedence: with both, Tectia matches host.
		r.dests = hostDests
		if ipSet {
			notes = append(notes, Note{Line: ipLine, What: fmt.Sprintf("rule %d: has both host and ip-address; Tectia uses host (the documented precedence), and so does the conversion: ip-address %s is not used", n, quote(ipValue))})
		}
	case ipSet:
		d, any, why := ipPattern(ipValue)
		if why != "" {
			bad(ipLine, "%s", why)
		} else if !any {
			r.dests = []string{d}
		}
	}
	if len(r.applications) > 0 && c.goos != "linux" {
		bad(appLine, "applications cannot be looked up on %s yet, only on Linux: remove application from the rule, or convert on Linux", c.goos)
	}
	switch r.action {
	case "":
		bad(e.Line, "has no action (tunnel, direct or block)")
	case "tunnel":
		if profRef == "" {
			bad(e.Line, "tunnels but names no profile (profile-id)")
			break
		}
		p := c.lookup(profRef)
		switch {
		case p == nil:
			bad(profLine, "profile %q names no profile", profRef)
		case p.broken:
			bad(profLine, "its profile %q (line %d) has a problem", profRef, p.line)
		default:
			r.profile = p
			if p.host == "" {
				// Tectia: an empty host means the application's destination.
				r.fromApp = true
			}
		}
	default:
		// hostname-from-app, fallback-to-plain and the profile only
		// matter to a tunnel.
		r.fromApp, r.fallback = false, false
	}
	if !r.broken {
		// Notes only for a rule that converts: the others are listed.
		for _, nt := range appNotes {
			c.note(appLine, "rule %d: %s", n, nt)
		}
		for _, nt := range notes {
			c.note(nt.Line, "%s", nt.What)
		}
		if r.profile != nil {
			r.profile.used = true
		}
	}
}
