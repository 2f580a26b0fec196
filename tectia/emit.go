package tectia

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// emit writes shunt's YAML: a header listing the notes and problems, then
// proxy_rules, profiles and rules, each with the line it came from.
func (c *converter) emit() []byte {
	var b bytes.Buffer
	file := oneLine(c.file)
	fmt.Fprintf(&b, "# Converted by shunt import-tectia from %s.\n", file)
	b.WriteString("# Each rule's comment names the line of the Tectia <rule> it came from.\n")
	if len(c.notes) > 0 {
		fmt.Fprintf(&b, "# Notes (%d): converted to what shunt does instead, or not needed:\n", len(c.notes))
		for _, n := range c.notes {
			fmt.Fprintf(&b, "#   %s\n", oneLine(n.String()))
		}
	}
	if len(c.problems) > 0 {
		fmt.Fprintf(&b, "# Not converted (%d):\n", len(c.problems))
		for _, p := range c.problems {
			fmt.Fprintf(&b, "#   %s\n", oneLine(p.String()))
		}
	}

	if len(c.proxyRules) > 0 {
		fmt.Fprintf(&b, "# From default-settings' proxy ruleset (%s:%d): how SSH servers are reached, first match wins.\n", file, c.proxyLine)
		b.WriteString("proxy_rules:\n")
		for _, r := range c.proxyRules {
			if len(r.dests) > 0 {
				fmt.Fprintf(&b, "  - destinations: %s\n    proxy: %s\n", flow(r.dests, scalar), scalar(r.proxy))
			} else {
				fmt.Fprintf(&b, "  - proxy: %s\n", scalar(r.proxy))
			}
		}
	}

	var ps []*profile
	for _, p := range c.profiles {
		if !p.broken && !p.leftOut {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		b.WriteString("profiles: []\n")
	} else {
		b.WriteString("profiles:\n")
	}
	for _, p := range c.profiles {
		if p.leftOut {
			fmt.Fprintf(&b, "  # %s:%d: profile %s was here, left out: it has no host, and no converted rule uses it (see above)\n", file, p.line, oneLine(p.name))
		}
		if p.broken || p.leftOut {
			continue
		}
		fmt.Fprintf(&b, "  # %s:%d\n", file, p.line)
		if p.host == "" {
			b.WriteString("  # No host: Tectia connects to each application's destination (host_from_application on its rules).\n")
		}
		fmt.Fprintf(&b, "  - name: %s\n", scalar(p.name))
		if p.host != "" {
			fmt.Fprintf(&b, "    host: %s\n", scalar(p.host))
		}
		if p.port != "" {
			fmt.Fprintf(&b, "    port: %s\n", p.port)
		}
		if p.user != "" {
			fmt.Fprintf(&b, "    user: %s\n", scalar(p.user))
		}
		if p.jump != nil {
			fmt.Fprintf(&b, "    jump: %s\n", scalar(p.jump.name))
		}
		s := p.set.effective(c.defaults)
		if s.proxy != "" {
			fmt.Fprintf(&b, "    proxy: %s\n", scalar(s.proxy))
		}
		if len(s.auth) > 0 {
			fmt.Fprintf(&b, "    auth_methods: %s\n", flow(s.auth, scalar))
		}
		if len(s.ciphers) > 0 {
			fmt.Fprintf(&b, "    ciphers: %s\n", flow(s.ciphers, scalar))
		}
		if s.keepalive != "" && s.keepalive != shuntDefault {
			fmt.Fprintf(&b, "    keepalive_interval: %s\n", s.keepalive)
		}
		if s.idleTimeout != "" && s.idleTimeout != shuntDefault {
			fmt.Fprintf(&b, "    idle_timeout: %s\n", s.idleTimeout)
		}
		if p.onStart {
			b.WriteString("    connect_on_start: true\n")
		}
	}

	c.emitTunnels(&b)

	converted := 0
	for _, r := range c.rules {
		if !r.broken {
			converted++
		}
	}
	if converted == 0 {
		b.WriteString("rules: []\n")
	} else {
		b.WriteString("rules:\n")
	}
	for _, r := range c.rules {
		if r.broken {
			fmt.Fprintf(&b, "  # %s:%d: rule %d was here, not converted (see above)\n", file, r.line, r.n)
			continue
		}
		fmt.Fprintf(&b, "  # %s:%d\n", file, r.line)
		fmt.Fprintf(&b, "  - name: rule-%d\n", r.n)
		if len(r.dests) > 0 {
			fmt.Fprintf(&b, "    destinations: %s\n", flow(r.dests, scalar))
		}
		if len(r.ports) > 0 {
			fmt.Fprintf(&b, "    ports: %s\n", flow(r.ports, port))
		}
		fmt.Fprintf(&b, "    action: %s\n", r.action)
		if r.profile != nil {
			fmt.Fprintf(&b, "    profile: %s\n", scalar(r.profile.name))
		}
		if r.fromApp {
			b.WriteString("    host_from_application: true\n")
		}
		if r.fallback {
			b.WriteString("    fallback_direct: true\n")
		}
		if len(r.applications) > 0 {
			fmt.Fprintf(&b, "    applications: %s\n", flow(r.applications, scalar))
		}
	}
	return b.Bytes()
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

func flow(items []string, f func(string) string) string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = f(s)
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// port writes a port as a number and a range as a quoted string.
func port(s string) string {
	if strings.Contains(s, "-") {
		return strconv.Quote(s)
	}
	return s
}
