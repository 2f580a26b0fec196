// Package tectia converts an SSH Tectia Connection Broker configuration
// (ssh-broker-config.xml) into shunt's YAML configuration: the converter
// behind `shunt import-tectia`.
//
// Element and attribute names follow Tectia's documentation of the file:
//
//   - https://www.ssh.com/manuals/server-zos-admin/61/ssh-socks-proxy-config_xml.html
//     (same format as ssh-broker-config.xml): profile id, name, host, port,
//     user; filter-engine/rule ip-address ("can be a regular expression"),
//     ports ("a single port or a range ... such as 21-25"), action,
//     hostname-from-app, fallback-to-plain; static-tunnels/tunnel.
//   - https://docs.ssh.com/manuals/server-zos-admin/55/Settings_for_Transparent_FTP_Tunneling.html:
//     profile connect-on-startup and gateway-profile ("the first tunnel is
//     created using the gateway host profile").
//   - https://docs.ssh.com/manuals/clientserver-unix-eval/63/quick-statictunnelunix.html:
//     tunnel type, listen-port, listen-address, dst-host, dst-port,
//     allow-relay, profile.
//   - https://docs.ssh.com/manuals/client-user/53/stconf-ftpsftp.html (the
//     rule dialog): a rule's destination is any host, a host name or an IP
//     address (both regular expressions); unset ports mean all ports; the
//     action is direct, block, or a connection through a profile's server;
//     "Fall back to DIRECT if secure connection cannot be established".
//
// Not spelled out by those pages, so accepted here by assumption: the
// rule's application and host-name attributes (named after the rule
// dialog's fields), its profile reference as profile-id or profile, the
// action values tunnel, direct and block in any case, comma-separated
// port lists and "all", and yes/no/true/false for booleans.
//
// Conversion is exact or not at all: whatever shunt cannot state with the
// same meaning is reported as a Problem with its line, and a rule with a
// problem is left out (a rule left out of an ordered, first-match list
// changes what the rules after it see, so the output says where it was).
//
// Regular expressions: ip-address converts when it is a literal address,
// ".*", or a prefix of whole octets ending in ".*" (10\.1\..* is
// 10.1.0.0/16); octets of any value may also be written \d+ or [0-9]+.
// Tectia matches the whole address, so ^ and $ are dropped. An unescaped
// '.' matches any character, yet in a full literal address (10.1.2.3) it
// can only have matched a dot: the other characters are digits, and an
// address has exactly three dots. So 10.1.2.3 converts, with no problem
// reported. In a prefix it cannot be trusted (1.1..* also matches
// 101.x.x.x) and is a problem. host-name converts when it is a name
// (mail\.example\.com, its dots escaped or not: an unescaped dot between
// labels is read as the dot that was meant), ".*", .*\.example\.com (any
// name under example.com: "*.example.com") or (.*\.)?example\.com (the
// domain and the names under it).
package tectia

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Options control a conversion.
type Options struct {
	// BestEffort accepts a conversion with problems (--best-effort).
	BestEffort bool
}

// Result is a conversion: shunt's YAML and what was not converted.
type Result struct {
	YAML     []byte
	Problems []Problem
}

// Failed reports whether the conversion should fail (exit non-zero): it
// has problems and opts does not accept them.
func (r *Result) Failed(opts Options) bool {
	return len(r.Problems) > 0 && !opts.BestEffort
}

// Problem is a construct of the Tectia file that was not converted.
type Problem struct {
	File string // the name given to Convert
	Line int
	What string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s:%d: %s (not converted)", p.File, p.Line, p.What)
}

// Convert reads a Tectia Connection Broker configuration from r (name is
// its file name, for messages) and converts it. Malformed XML is an error
// naming the line; everything that cannot be converted is a Problem of the
// Result, whose YAML holds the rest.
func Convert(r io.Reader, name string, opts Options) (*Result, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root, err := parseXML(data, name)
	if err != nil {
		return nil, err
	}
	if root.Name != "secsh-broker" {
		return nil, fmt.Errorf("%s:%d: the root element is <%s>, not <secsh-broker>: this is not a Tectia Connection Broker configuration", name, root.Line, root.Name)
	}
	c := &converter{file: name}
	c.convert(root)
	slices.SortStableFunc(c.problems, func(a, b Problem) int { return a.Line - b.Line })
	out := c.emit()
	if err := checkYAML(out); err != nil {
		return nil, fmt.Errorf("%s: internal error, the converted YAML does not parse: %v", name, err)
	}
	return &Result{YAML: out, Problems: c.problems}, nil
}

type converter struct {
	file     string
	problems []Problem
	profiles []*profile
	byID     map[string]*profile
	byName   map[string]*profile
	names    map[string]bool // output names in use
	rules    []*rule
}

type profile struct {
	line      int
	id, label string // Tectia's id and name
	name      string // shunt's name
	host      string // "" means the application's destination
	port      string
	user      string
	gateway   string // Tectia reference
	gwLine    int
	jump      *profile
	onStart   bool
	broken    bool // not converted
	resolving bool
	resolved  bool
}

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

func (c *converter) problem(line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: c.file, Line: line, What: fmt.Sprintf(format, args...)})
}

// ignored are sections with no bearing on what is tunnelled and how.
var ignored = map[string]bool{"logging": true}

func (c *converter) convert(root *element) {
	c.byID = map[string]*profile{}
	c.byName = map[string]*profile{}
	c.names = map[string]bool{}
	c.noText(root)
	var ruleEls []*element
	for _, e := range root.Children {
		switch {
		case e.Name == "profiles":
			c.noAttrs(e)
			c.noText(e)
			for _, p := range e.Children {
				if p.Name != "profile" {
					c.problem(p.Line, "<%s> inside <profiles> is not a profile", p.Name)
					continue
				}
				c.readProfile(p)
			}
		case e.Name == "filter-engine":
			c.noAttrs(e)
			c.noText(e)
			for _, r := range e.Children {
				switch r.Name {
				case "rule":
					ruleEls = append(ruleEls, r)
				case "dns", "filter", "network":
					c.problem(r.Line, "<%s> inside <filter-engine> (an older or other filter format) is not understood; only <rule> elements convert", r.Name)
				default:
					c.problem(r.Line, "<%s> inside <filter-engine> is not understood; only <rule> elements convert", r.Name)
				}
			}
		case e.Name == "static-tunnels":
			c.noAttrs(e)
			c.noText(e)
			for _, t := range e.Children {
				if t.Name != "tunnel" {
					c.problem(t.Line, "<%s> inside <static-tunnels> is not understood", t.Name)
					continue
				}
				c.problem(t.Line, "static tunnel %s: static tunnels are not supported yet", describeTunnel(t))
			}
		case ignored[e.Name]:
		default:
			c.problem(e.Line, "the <%s> section: set the shunt equivalents of its settings by hand (see shunt's README)", e.Name)
		}
	}
	for _, p := range c.profiles {
		c.resolveJump(p)
	}
	for i, r := range ruleEls {
		c.readRule(i+1, r)
	}
}

func describeTunnel(t *element) string {
	get := func(k string) string {
		for _, a := range t.Attrs {
			if a.Name == k {
				return a.Value
			}
		}
		return ""
	}
	s := "listening on port " + orDash(get("listen-port"))
	if a := get("listen-address"); a != "" {
		s = "listening on " + a + ":" + orDash(get("listen-port"))
	}
	if h := get("dst-host"); h != "" || get("dst-port") != "" {
		s += " to " + orDash(h) + ":" + orDash(get("dst-port"))
	}
	if p := get("profile"); p != "" {
		s += " through profile " + strconv.Quote(p)
	}
	if t := get("type"); t != "" {
		s = t + " " + s
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (c *converter) noAttrs(e *element) {
	for _, a := range e.Attrs {
		c.problem(a.Line, "attribute %s of <%s> is not understood", a.Name, e.Name)
	}
}

func (c *converter) noText(e *element) {
	if e.TextLine > 0 {
		c.problem(e.TextLine, "text inside <%s> is not understood", e.Name)
	}
}

var (
	unsafeName = regexp.MustCompile(`[^a-z0-9._-]+`)
	hostChars  = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
)

func (c *converter) readProfile(e *element) {
	p := &profile{line: e.Line}
	for _, a := range e.Attrs {
		v := strings.TrimSpace(a.Value)
		switch a.Name {
		case "id":
			p.id = v
		case "name":
			p.label = v
		case "host":
			switch {
			case v == "" || v == "*":
				// Tectia opens the connection to the application's
				// destination: host_from_application on the rules.
			case !hostChars.MatchString(v):
				c.problem(a.Line, "profile host %q is not a host name or address", a.Value)
				p.broken = true
			default:
				p.host = v
			}
		case "port":
			if v == "" {
				break
			}
			if n, err := strconv.ParseUint(v, 10, 16); err != nil || n == 0 {
				c.problem(a.Line, "profile port %q is not a port (1-65535)", a.Value)
				p.broken = true
			} else {
				p.port = strconv.FormatUint(n, 10)
			}
		case "user":
			switch {
			case v == "" || strings.EqualFold(v, "%USERNAME%"):
				// The local user, as in shunt.
			case strings.Contains(v, "%"):
				c.problem(a.Line, "profile user %q uses a variable shunt does not expand; write the user name", a.Value)
				p.broken = true
			default:
				p.user = v
			}
		case "gateway-profile":
			p.gateway, p.gwLine = v, a.Line
		case "connect-on-startup":
			b, ok := parseBool(v)
			if !ok {
				c.problem(a.Line, "profile connect-on-startup %q is not yes or no", a.Value)
				break
			}
			p.onStart = b
		default:
			c.problem(a.Line, "profile attribute %s is not understood", a.Name)
		}
	}
	c.noText(e)
	for _, ch := range e.Children {
		c.problem(ch.Line, "profile setting <%s>: set its shunt equivalent by hand", ch.Name)
	}
	if p.id != "" {
		if q := c.byID[p.id]; q != nil {
			c.problem(e.Line, "profile id %q is used again (first at line %d)", p.id, q.line)
			return
		}
		c.byID[p.id] = p
	}
	if p.label != "" && c.byName[p.label] == nil {
		c.byName[p.label] = p
	}
	p.name = c.uniqueName(p.label, p.id, len(c.profiles)+1)
	c.profiles = append(c.profiles, p)
}

// uniqueName makes a shunt profile name from Tectia's name or id.
func (c *converter) uniqueName(label, id string, n int) string {
	base := ""
	for _, s := range []string{label, id} {
		base = strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "-"), "-.")
		if base != "" {
			break
		}
	}
	if base == "" {
		base = fmt.Sprintf("profile-%d", n)
	}
	name := base
	for i := 2; c.names[name]; i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	c.names[name] = true
	return name
}

// lookup finds a profile by Tectia id, then by name.
func (c *converter) lookup(ref string) *profile {
	if p := c.byID[ref]; p != nil {
		return p
	}
	return c.byName[ref]
}

func (c *converter) resolveJump(p *profile) {
	if p.resolved {
		return
	}
	if p.resolving {
		c.problem(p.gwLine, "profile %q: its gateway-profile chain loops back to it", p.name)
		p.broken = true
		return
	}
	p.resolving = true
	if p.gateway != "" {
		g := c.lookup(p.gateway)
		switch {
		case g == nil:
			c.problem(p.gwLine, "profile %q: gateway-profile %q names no profile", p.name, p.gateway)
			p.broken = true
		case g == p:
			c.problem(p.gwLine, "profile %q is its own gateway-profile", p.name)
			p.broken = true
		default:
			c.resolveJump(g)
			p.jump = g
			switch {
			case p.broken:
				// Reported already (a loop through p).
			case g.broken:
				c.problem(p.gwLine, "profile %q: its gateway-profile %q (line %d) has a problem", p.name, g.name, g.line)
				p.broken = true
			case g.host == "":
				c.problem(p.gwLine, "profile %q: its gateway-profile %q has no host to connect through", p.name, g.name)
				p.broken = true
			}
		}
	}
	p.resolving = false
	p.resolved = true
}

func parseBool(s string) (value, ok bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "yes", "true", "on", "1":
		return true, true
	case "no", "false", "off", "0", "":
		return false, true
	}
	return false, false
}

func (c *converter) readRule(n int, e *element) {
	r := &rule{n: n, line: e.Line}
	c.rules = append(c.rules, r)
	bad := func(line int, format string, args ...any) {
		c.problem(line, "rule %d: "+format, append([]any{n}, args...)...)
		r.broken = true
	}
	var ipDest, hostDests []string
	var ipLine, hostLine, profLine int
	var profRef string
	for _, a := range e.Attrs {
		switch a.Name {
		case "ip-address":
			d, any, why := ipPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			} else if !any {
				ipDest, ipLine = []string{d}, a.Line
			}
		case "host-name":
			d, any, why := hostPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			} else if !any {
				hostDests, hostLine = d, a.Line
			}
		case "ports":
			ports, _, why := portsPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			}
			r.ports = ports
		case "action":
			switch v := strings.ToLower(strings.TrimSpace(a.Value)); v {
			case "tunnel", "direct", "block":
				r.action = v
			default:
				bad(a.Line, "action %q has no shunt equivalent (shunt has tunnel, direct and block)", a.Value)
				r.action = "?"
			}
		case "profile-id", "profile":
			if profLine != 0 {
				bad(a.Line, "names its profile twice")
			}
			profRef, profLine = strings.TrimSpace(a.Value), a.Line
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
		case "application":
			apps, _, why := appPattern(a.Value)
			if why != "" {
				bad(a.Line, "%s", why)
			}
			r.applications = apps
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
	if ipDest != nil && hostDests != nil {
		bad(max(ipLine, hostLine), "has both ip-address and host-name; Tectia's rule takes one destination, and which one it would use is unclear")
	}
	r.dests = append(ipDest, hostDests...)
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
}

// emit writes shunt's YAML.
func (c *converter) emit() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Converted by shunt import-tectia from %s.\n", oneLine(c.file))
	b.WriteString("# Each rule's comment names the line of the Tectia <rule> it came from.\n")
	probs := c.problems
	if len(probs) > 0 {
		fmt.Fprintf(&b, "# Not converted (%d):\n", len(probs))
		for _, p := range probs {
			fmt.Fprintf(&b, "#   %s\n", oneLine(p.String()))
		}
	}
	var ps []*profile
	for _, p := range c.profiles {
		if !p.broken {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		b.WriteString("profiles: []\n")
	} else {
		b.WriteString("profiles:\n")
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "  # %s:%d\n", oneLine(c.file), p.line)
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
		if p.onStart {
			b.WriteString("    connect_on_start: true\n")
		}
	}
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
			fmt.Fprintf(&b, "  # %s:%d: rule %d was here, not converted (see above)\n", oneLine(c.file), r.line, r.n)
			continue
		}
		fmt.Fprintf(&b, "  # %s:%d\n", oneLine(c.file), r.line)
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
