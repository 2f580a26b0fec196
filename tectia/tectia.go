// Package tectia converts an SSH Tectia Connection Broker configuration
// (ssh-broker-config.xml) into shunt's YAML configuration: the converter
// behind `shunt import-tectia`.
//
// The reference is the documented model of the file, ssh-broker-config(5)
// (Tectia Client and ConnectSecure 6.x), whose top-level elements are, in
// order, general, default-settings, profiles, static-tunnels, gui,
// filter-engine and logging (the DTD appendix, broker-dtd.html). What was
// read in Tectia's documentation:
//
//   - Profiles (https://www.ssh.com/manuals/server-zos-admin/61/ssh-socks-proxy-config_xml.html,
//     the same format): id, name, host ("if it is left empty and/or under
//     the filter-engine/rule element hostname-from-app="yes", the Secure
//     Shell connection is opened to the destination host"), port, user,
//     connect-on-startup, gateway-profile ("the first tunnel is created
//     using the gateway host profile"). User "%USERNAME%" is the local
//     user (the profile page of the Tectia Client manual).
//   - The rule dialog (https://docs.ssh.com/manuals/client-user/53/stconf-ftpsftp.html):
//     a rule is for any host, a host name or an IP address (regular
//     expressions); unset ports mean all ports; the action is direct,
//     block, or a connection through a profile's server; "Fall back to
//     DIRECT if secure connection cannot be established".
//   - Proxy rules (https://docs.ssh.com/manuals/client-user/53/stconf-proxyrule.html):
//     a type of direct, socks4, socks5 or http; for the others a server
//     and port; conditions delimited by commas, each an IP address, a
//     range x.x.x.x-y.y.y.y or a network x.x.x.x/y, or a host name pattern
//     with * and ?, each with an optional :port_range; read top down.
//   - Idle timeout (Tectia Manager's help for the client setting,
//     https://www.ssh.com/manuals/manager-admin/62/help-client.html): "how
//     long idle time in seconds (after all connection channels are closed)
//     is allowed for a connection before automatically closing the
//     connection ... 0 (zero) terminates the connection immediately".
//   - Static tunnels (https://docs.ssh.com/manuals/clientserver-unix-eval/63/quick-statictunnelunix.html):
//     type, listen-port, listen-address, dst-host, dst-port, allow-relay,
//     profile.
//   - From ssh-broker-config(5) as this project records it (ANCHORS.md)
//     and issue 11: rule attributes application, host and ip-address are
//     egrep regular expressions, and with both host and ip-address, host
//     wins; pseudo-ip and destination/destination-port rewriting; network
//     elements are the filter engine's location awareness; profile
//     attributes protocol="secsh2" and host-type; logging goes to a file
//     or syslog.
//
// The stored copies of ssh-broker-config(5) available when this was
// written showed only the opening of the page, so these names are taken
// from the man page as remembered, not from its text, and are to be
// checked against it: <ciphers><cipher name=.../>, <authentication-methods>
// <authentication-method name=.../> (and auth-publickey, auth-password and
// the like naming a method), <idle-timeout type="connection" time=N>,
// <keepalive-interval time=N> (0: none), <compression name=...>, <macs>,
// <kexs>, <hostkey-algorithms>, <crypto-lib mode=...>, <proxy ruleset=...>
// with rules separated by ';' and written type(server_url) conditions
// (direct with no server), and rules tied to a <network> by a network-id
// (or network) attribute or by being written inside it. Accepted by
// assumption too: profile as another name of profile-id, action values in
// any case, comma-separated port lists and "all", yes/no/true/false for
// booleans. Whatever else a file holds is reported, with its line.
//
// Conversion is exact or not at all: whatever shunt cannot state with the
// same meaning is reported as a Problem with its line, and a rule with a
// problem is left out (a rule left out of an ordered, first-match list
// changes what the rules after it see, so the output says where it was).
// Where shunt does something close but not the same (a preference list
// shortened to what shunt implements, keepalives it always sends, logging,
// an application pattern read as the one program it names), the
// conversion goes ahead with a Note saying what shunt does instead and
// what to check; notes are printed and written in the output's header, and
// never fail the conversion. The output, with or
// without --best-effort, is always a configuration `shunt check` accepts:
// what would make it invalid is left out and said.
//
// Regular expressions: ip-address converts when it is a literal address,
// ".*", or a prefix of whole octets ending in ".*" (10\.1\..* is
// 10.1.0.0/16); octets of any value may also be written \d+ or [0-9]+.
// Tectia matches the whole address, so ^ and $ are dropped. An unescaped
// '.' matches any character, yet in a full literal address (10.1.2.3) it
// can only have matched a dot: the other characters are digits, and an
// address has exactly three dots. So 10.1.2.3 converts, with no problem
// reported. In a prefix it cannot be trusted (1.1..* also matches
// 101.x.x.x) and is a problem. host converts when it is a name
// (mail\.example\.com, its dots escaped or not: an unescaped dot between
// labels is read as the dot that was meant), ".*", .*\.example\.com (any
// name under example.com: "*.example.com") or (.*\.)?example\.com (the
// domain and the names under it). application converts when it is a
// program name, .*name.* (shunt matches the name exactly, and says so), or
// alternatives of these (thunderbird|evolution).
package tectia

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Options control a conversion.
type Options struct {
	// BestEffort accepts a conversion with problems (--best-effort).
	BestEffort bool
}

// Result is a conversion: shunt's YAML, what was not converted, and what
// was converted to something close but not the same.
type Result struct {
	YAML     []byte
	Problems []Problem
	Notes    []Note
}

// Failed reports whether the conversion should fail (exit non-zero): it
// has problems and opts does not accept them. Notes never fail it.
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

// Note is a construct of the Tectia file that was converted to what shunt
// does instead, or that needs no conversion; it says what changes.
type Note struct {
	File string
	Line int
	What string
}

func (n Note) String() string {
	return fmt.Sprintf("%s:%d: note: %s", n.File, n.Line, n.What)
}

// Convert reads a Tectia Connection Broker configuration from r (name is
// its file name, for messages) and converts it. Malformed XML is an error
// naming the line; everything that cannot be converted is a Problem of the
// Result, whose YAML holds the rest.
func Convert(r io.Reader, name string, opts Options) (*Result, error) {
	return convertFor(r, name, runtime.GOOS)
}

// convertFor converts for a shunt running on goos.
func convertFor(r io.Reader, name, goos string) (*Result, error) {
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
	c := &converter{file: name, goos: goos}
	c.convert(root)
	slices.SortStableFunc(c.problems, func(a, b Problem) int { return a.Line - b.Line })
	slices.SortStableFunc(c.notes, func(a, b Note) int { return a.Line - b.Line })
	out := c.emit()
	if err := checkYAML(out); err != nil {
		return nil, fmt.Errorf("%s: internal error, the converted YAML does not parse: %v", name, err)
	}
	return &Result{YAML: out, Problems: c.problems, Notes: c.notes}, nil
}

type converter struct {
	file     string
	goos     string // applications are looked up on Linux only
	problems []Problem
	notes    []Note

	defaults   settings // from <default-settings>
	proxyRules []proxyRule
	proxyLine  int

	profiles []*profile
	byID     map[string]*profile
	byName   map[string]*profile
	names    map[string]bool // output names in use
	suffix   map[string]int  // the last -N suffix given to a base name

	networks map[string]int // <network> id: line
	rules    []*rule
	tunnels  []*tunnel
}

func (c *converter) problem(line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{File: c.file, Line: line, What: fmt.Sprintf(format, args...)})
}

func (c *converter) note(line int, format string, args ...any) {
	c.notes = append(c.notes, Note{File: c.file, Line: line, What: fmt.Sprintf(format, args...)})
}

// loggingNote says what shunt does instead of Tectia's log-events.
const loggingNote = "logging: shunt writes its log to standard error (the journal, when systemd runs it), " +
	"at the level of log.level (info unless set, which logs each flow as it opens and closes, with the rule that decided it); " +
	"Tectia's log-events, facilities, severities and log files do not carry over"

func (c *converter) convert(root *element) {
	c.byID = map[string]*profile{}
	c.byName = map[string]*profile{}
	c.names = map[string]bool{}
	c.suffix = map[string]int{}
	c.networks = map[string]int{}
	c.noText(root)
	for _, a := range root.Attrs {
		if a.Name != "version" && !strings.HasPrefix(a.Name, "xmlns") {
			c.problem(a.Line, "attribute %s of <secsh-broker> is not understood", a.Name)
		}
	}
	var ruleEls []ruleEl
	for _, e := range root.Children {
		switch e.Name {
		case "general":
			c.noAttrs(e)
			c.noText(e)
			c.readGeneral(e)
		case "default-settings":
			c.noAttrs(e)
			c.noText(e)
			c.readSettings(e, "default-settings", &c.defaults, nil)
		case "profiles":
			c.noAttrs(e)
			c.noText(e)
			for _, p := range e.Children {
				if p.Name != "profile" {
					c.problem(p.Line, "<%s> inside <profiles> is not a profile", p.Name)
					continue
				}
				c.readProfile(p)
			}
		case "static-tunnels":
			c.readStaticTunnels(e)
		case "gui":
			if len(e.Attrs) > 0 || len(e.Children) > 0 || e.TextLine > 0 {
				c.note(e.Line, "gui: Tectia's GUI settings have no bearing on what shunt tunnels; left out")
			}
		case "filter-engine":
			c.noAttrs(e)
			c.noText(e)
			ruleEls = append(ruleEls, c.readFilterEngine(e)...)
		case "logging":
			if len(e.Attrs) > 0 || len(e.Children) > 0 || e.TextLine > 0 {
				c.note(e.Line, "%s", loggingNote)
			}
		default:
			c.problem(e.Line, "the <%s> section is not part of ssh-broker-config(5)", e.Name)
		}
	}
	for _, p := range c.profiles {
		c.resolveJump(p)
	}
	c.resolveTunnels()
	for i, r := range ruleEls {
		c.readRule(i+1, r)
	}
	c.checkProfiles()
}

// readGeneral reads <general>. Only the standard crypto library needs no
// setting in shunt.
func (c *converter) readGeneral(e *element) {
	hints := map[string]string{
		"strict-host-key-checking": "shunt's host_key_policy (strict, accept-new or ask; strict unless set) is set per profile",
		"accept-unknown-host-keys": "set host_key_policy: accept-new on the profiles by hand",
		"host-key-always-ask":      "set host_key_policy: ask on the profiles by hand",
		"known-hosts":              "set known_hosts (OpenSSH known_hosts files) on the profiles by hand",
		"key-stores":               "set identity_files (or use ssh-agent) on the profiles by hand",
	}
	for _, ch := range e.Children {
		if ch.Name == "crypto-lib" && len(ch.Children) == 0 && ch.TextLine == 0 {
			mode, ok := attrValue(ch, "mode")
			switch {
			case len(ch.Attrs) == 0 || len(ch.Attrs) == 1 && ok && strings.EqualFold(strings.TrimSpace(mode), "standard"):
				continue // the standard library: what shunt uses
			case len(ch.Attrs) == 1 && ok:
				c.problem(ch.Line, "general setting <crypto-lib mode=%q>: shunt has no FIPS 140-2 mode (it uses golang.org/x/crypto)", mode)
				continue
			}
		}
		if h, ok := hints[ch.Name]; ok {
			c.problem(ch.Line, "general setting <%s>: %s", ch.Name, h)
			continue
		}
		c.problem(ch.Line, "general setting <%s> has no shunt equivalent", ch.Name)
	}
}

func describeTunnel(t *element) string {
	get := func(k string) string {
		v, _ := attrValue(t, k)
		return v
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

func attrValue(e *element, name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value, true
		}
	}
	return "", false
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

func (c *converter) noChildren(e *element) {
	for _, ch := range e.Children {
		c.problem(ch.Line, "<%s> inside <%s> is not understood", ch.Name, e.Name)
	}
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
