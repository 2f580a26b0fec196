package tectia

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker"
)

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
	set       settings // the profile's own connection settings
	broken    bool     // not converted
	resolving bool
	resolved  bool
	// used: a converted rule tunnels through it. A profile without a host
	// is only valid for shunt when it is.
	used bool
	// leftOut: a profile without a host that no converted rule uses.
	leftOut bool
}

// settings are the connection settings of <default-settings> or of a
// profile; unset fields (nil, "") take default-settings' values. An empty,
// non-nil list is a list that was set but kept nothing, and a duration set
// to what shunt cannot say is shuntDefault: neither is replaced by
// default-settings' value, and neither is written.
type settings struct {
	ciphers     []string
	auth        []string
	idleTimeout string // a shunt duration, or shuntDefault
	keepalive   string
	// proxy is a profile's own proxy: a URL, or "direct".
	proxy     string
	proxyLine int
}

// effective is s, with what it leaves unset taken from d.
func (s settings) effective(d settings) settings {
	if s.ciphers == nil {
		s.ciphers = d.ciphers
	}
	if s.auth == nil {
		s.auth = d.auth
	}
	if s.idleTimeout == "" {
		s.idleTimeout = d.idleTimeout
	}
	if s.keepalive == "" {
		s.keepalive = d.keepalive
	}
	return s
}

// shuntDefault marks a duration the profile sets that shunt leaves at its
// own default (said in a problem or a note), rather than default-settings'.
const shuntDefault = "(shunt's default)"

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
		case "protocol":
			// SSH 2 is the only protocol, Tectia's and shunt's.
			if v != "" && !strings.EqualFold(v, "secsh2") {
				c.problem(a.Line, "profile protocol %q: shunt speaks SSH 2 (secsh2) only", a.Value)
				p.broken = true
			}
		case "host-type":
			// The server's operating system, for Tectia's file transfer
			// and terminal settings: no bearing on tunnels.
		default:
			c.problem(a.Line, "profile attribute %s is not understood", a.Name)
		}
	}
	c.noText(e)
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
	c.readSettings(e, "profile "+strconv.Quote(p.name), &p.set, p)
}

// plural names items: "cipher x is", "ciphers x, y are".
func plural(items []string, one, many string) string {
	if len(items) == 1 {
		return one + " " + items[0] + " is"
	}
	return many + " " + strings.Join(items, ", ") + " are"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// readSettings reads the connection settings inside e (<default-settings>
// or a <profile>, p; nil for default-settings) into s. where names e in
// messages.
func (c *converter) readSettings(e *element, where string, s *settings, p *profile) {
	isDefault := p == nil
	for _, ch := range e.Children {
		switch ch.Name {
		case "tunnels", "local-tunnel", "remote-tunnel":
			c.readProfileTunnels(ch, where, p)
		case "ciphers":
			c.noAttrs(ch)
			c.noText(ch)
			s.ciphers = c.readCiphers(ch, where)
		case "authentication-methods":
			c.noAttrs(ch)
			c.noText(ch)
			s.auth = c.readAuthMethods(ch, where)
		case "idle-timeout":
			s.idleTimeout = c.readIdleTimeout(ch, where)
		case "keepalive-interval":
			s.keepalive = c.readKeepalive(ch, where)
		case "proxy":
			c.readProxy(ch, where, s, isDefault)
		case "compression":
			c.noText(ch)
			c.noChildren(ch)
			for _, a := range ch.Attrs {
				switch a.Name {
				case "name":
					if v := strings.TrimSpace(a.Value); v != "" && !strings.EqualFold(v, "none") {
						c.note(a.Line, "%s: compression %q: shunt does not compress (golang.org/x/crypto has no compression); the data is the same, only not compressed", where, a.Value)
					}
				case "level":
				default:
					c.problem(a.Line, "attribute %s of <compression> is not understood", a.Name)
				}
			}
		case "macs", "kexs", "hostkey-algorithms":
			c.problem(ch.Line, "%s: <%s>: shunt has no setting for these algorithms (it offers golang.org/x/crypto's defaults), so it cannot keep this list", where, ch.Name)
		default:
			c.problem(ch.Line, "%s: setting <%s> has no shunt equivalent", where, ch.Name)
		}
	}
}

// cipherKind says whether shunt's SSH library implements a cipher (it uses
// the insecure ones only when a profile names them).
func cipherKind(name string) (implemented, insecure bool) {
	if slices.Contains(ssh.InsecureAlgorithms().Ciphers, name) {
		return true, true
	}
	return slices.Contains(ssh.SupportedAlgorithms().Ciphers, name), false
}

// readCiphers reads <ciphers>: the cipher names, in order, that shunt
// implements. Leaving out the others only narrows what is offered; when
// none is left, nothing could be negotiated as Tectia would, a problem.
func (c *converter) readCiphers(e *element, where string) []string {
	if len(e.Children) == 0 {
		return nil // an empty list sets nothing
	}
	out, dropped := []string{}, []string(nil)
	for _, ch := range e.Children {
		if ch.Name != "cipher" {
			c.problem(ch.Line, "%s: <%s> inside <ciphers> is not a cipher", where, ch.Name)
			continue
		}
		c.noText(ch)
		c.noChildren(ch)
		name := ""
		for _, a := range ch.Attrs {
			if a.Name != "name" {
				c.problem(a.Line, "attribute %s of <cipher> is not understood", a.Name)
				continue
			}
			name = strings.TrimSpace(a.Value)
		}
		implemented, insecure := cipherKind(name)
		switch {
		case name == "":
			c.problem(ch.Line, "%s: <cipher> names no cipher", where)
		case !implemented:
			dropped = append(dropped, name)
		case slices.Contains(out, name):
		default:
			if insecure {
				c.note(ch.Line, "%s: cipher %s is converted, but it has known weaknesses (golang.org/x/crypto lists it as insecure): consider leaving it out", where, name)
			}
			out = append(out, name)
		}
	}
	if len(dropped) > 0 && len(out) == 0 {
		c.problem(e.Line, "%s: none of the ciphers %s is one shunt implements (%s)", where, strings.Join(dropped, ", "), strings.Join(ssh.SupportedAlgorithms().Ciphers, ", "))
		return []string{} // set, so default-settings' list does not replace it
	}
	if len(dropped) > 0 {
		c.note(e.Line, "%s: %s not implemented by shunt, so left out of the list; the others keep their order", where, plural(dropped, "cipher", "ciphers"))
	}
	return out
}

// authName maps a Tectia method name to shunt's ("" for one shunt does
// not implement); known is false for a name Tectia does not have.
func authName(tectia string) (shunt string, known bool) {
	switch strings.ToLower(tectia) {
	case "publickey":
		return broker.AuthPublicKey, true
	case "keyboard-interactive":
		return broker.AuthKeyboardInteractive, true
	case "password":
		return broker.AuthPassword, true
	case "gssapi-with-mic", "hostbased":
		return "", true
	}
	return "", false
}

// readAuthMethods reads <authentication-methods>: the methods, in order,
// that shunt has. As with ciphers, leaving out the others only narrows
// what is tried; with none left, a problem.
func (c *converter) readAuthMethods(e *element, where string) []string {
	if len(e.Children) == 0 {
		return nil
	}
	out, dropped := []string{}, []string(nil)
	add := func(line int, tectia string) {
		shunt, known := authName(tectia)
		switch {
		case !known:
			c.problem(line, "%s: authentication method %q is not one of Tectia's (publickey, keyboard-interactive, password, gssapi-with-mic, hostbased)", where, tectia)
		case shunt == "":
			dropped = append(dropped, tectia)
		case !slices.Contains(out, shunt):
			out = append(out, shunt)
		}
	}
	for _, ch := range e.Children {
		c.noText(ch)
		switch {
		case ch.Name == "authentication-method":
			c.noChildren(ch)
			name := ""
			for _, a := range ch.Attrs {
				if a.Name != "name" {
					c.problem(a.Line, "attribute %s of <authentication-method> is not understood", a.Name)
					continue
				}
				name = strings.TrimSpace(a.Value)
			}
			if name == "" {
				c.problem(ch.Line, "%s: <authentication-method> names no method", where)
				continue
			}
			add(ch.Line, name)
		case strings.HasPrefix(ch.Name, "auth-"):
			// The method's own settings have no shunt equivalent.
			for _, a := range ch.Attrs {
				c.problem(a.Line, "%s: attribute %s of <%s> has no shunt equivalent", where, a.Name, ch.Name)
			}
			for _, g := range ch.Children {
				c.problem(g.Line, "%s: <%s> inside <%s> has no shunt equivalent", where, g.Name, ch.Name)
			}
			add(ch.Line, strings.TrimPrefix(ch.Name, "auth-"))
		default:
			c.problem(ch.Line, "%s: <%s> inside <authentication-methods> is not understood", where, ch.Name)
		}
	}
	if len(dropped) > 0 && len(out) == 0 {
		c.problem(e.Line, "%s: shunt has none of the authentication methods %s (it has publickey, keyboard-interactive and password)", where, strings.Join(dropped, ", "))
		return []string{}
	}
	if len(dropped) > 0 {
		c.note(e.Line, "%s: %s not implemented by shunt, so left out; the others keep their order", where, plural(dropped, "authentication method", "authentication methods"))
	}
	return out
}

// seconds reads a whole number of seconds from attribute "time" of e.
func (c *converter) seconds(e *element, where string, extra ...string) (n uint64, line int, ok bool) {
	c.noText(e)
	c.noChildren(e)
	found := false
	for _, a := range e.Attrs {
		switch {
		case a.Name == "time":
			v, err := strconv.ParseUint(strings.TrimSpace(a.Value), 10, 32)
			if err != nil {
				c.problem(a.Line, "%s: <%s> time %q is not a number of seconds", where, e.Name, a.Value)
				return 0, 0, false
			}
			n, line, found = v, a.Line, true
		case slices.Contains(extra, a.Name):
		default:
			c.problem(a.Line, "attribute %s of <%s> is not understood", a.Name, e.Name)
		}
	}
	if !found {
		c.problem(e.Line, "%s: <%s> has no time (seconds)", where, e.Name)
		return 0, 0, false
	}
	return n, line, true
}

// readIdleTimeout reads <idle-timeout type="connection" time="N">: close
// the connection N seconds after its last channel closed, shunt's
// idle_timeout.
func (c *converter) readIdleTimeout(e *element, where string) string {
	if t, ok := attrValue(e, "type"); ok && strings.TrimSpace(t) != "" && !strings.EqualFold(strings.TrimSpace(t), "connection") {
		c.problem(e.Line, "%s: idle-timeout of type %q has no shunt equivalent (shunt's idle_timeout is the connection's)", where, t)
		return shuntDefault
	}
	n, line, ok := c.seconds(e, where, "type")
	switch {
	case !ok:
		return shuntDefault
	case n == 0:
		c.problem(line, "%s: idle-timeout 0 closes the connection as soon as its last channel closes, which shunt cannot say (idle_timeout 0 means its default, 10m): set a short idle_timeout, e.g. 1s, by hand", where)
		return shuntDefault
	}
	return fmt.Sprintf("%ds", n)
}

// readKeepalive reads <keepalive-interval time="N">: a keepalive every N
// seconds, shunt's keepalive_interval. Tectia's 0 sends none; shunt always
// sends them, which only drops a dead connection sooner.
func (c *converter) readKeepalive(e *element, where string) string {
	n, line, ok := c.seconds(e, where)
	switch {
	case !ok:
		return shuntDefault
	case n == 0:
		c.note(line, "%s: keepalive-interval 0 sends no keepalives; shunt always sends them (keepalive_interval 15s unless set) and drops a connection after keepalive_count (3) go unanswered", where)
		return shuntDefault
	}
	return fmt.Sprintf("%ds", n)
}

// readProxy reads <proxy ruleset=...>. In <default-settings> it becomes
// shunt's proxy_rules, which apply to every profile without a proxy of its
// own, as Tectia's default settings do. A profile's own ruleset converts
// when it is one rule for any server.
func (c *converter) readProxy(e *element, where string, s *settings, isDefault bool) {
	c.noText(e)
	c.noChildren(e)
	var ruleset string
	line := e.Line
	for _, a := range e.Attrs {
		if a.Name != "ruleset" {
			c.problem(a.Line, "attribute %s of <proxy> is not understood", a.Name)
			continue
		}
		ruleset, line = a.Value, a.Line
	}
	rules, why := parseRuleset(ruleset)
	if why != "" {
		c.problem(line, "%s: proxy ruleset: %s", where, why)
		return
	}
	if isDefault {
		c.proxyRules, c.proxyLine = rules, line
		return
	}
	switch {
	case len(rules) == 0:
	case len(rules) == 1 && len(rules[0].dests) == 0:
		s.proxy, s.proxyLine = rules[0].proxy, line
	default:
		c.problem(line, "%s: a proxy ruleset of several rules, or of rules for some servers only, has no shunt equivalent for one profile (shunt's profile takes one proxy; proxy_rules, from default-settings, apply to all profiles)", where)
	}
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
	for c.names[name] {
		// Count on from the last suffix given to base, so that many
		// profiles of one name cost no more than many of different names.
		c.suffix[base]++
		name = fmt.Sprintf("%s-%d", base, c.suffix[base]+1)
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

// checkProfiles settles, once the rules are read, what each profile can
// be written as.
func (c *converter) checkProfiles() {
	for _, p := range c.profiles {
		if p.broken {
			continue
		}
		if p.host == "" && !p.used {
			// shunt accepts a profile without a host only for rules that
			// connect to the application's destination through it.
			p.leftOut = true
			c.note(p.line, "profile %q has no host and no converted rule connects through it to the application's destination, so it is left out (shunt needs a host for any other use)", p.name)
			continue
		}
		s := &p.set
		switch {
		case s.proxy != "" && p.jump != nil:
			c.problem(s.proxyLine, "profile %q has its own proxy and a gateway-profile: shunt reaches it through the gateway only; set the proxy on profile %q instead", p.name, p.jump.name)
			s.proxy = ""
		case s.proxy == "direct":
			for _, r := range c.proxyRules {
				if r.proxy != "direct" {
					c.problem(s.proxyLine, "profile %q connects directly, but default-settings' proxy rules apply to every profile without a proxy in shunt; add a proxy rule for its host, direct, by hand", p.name)
					break
				}
			}
			s.proxy = ""
		}
	}
}
