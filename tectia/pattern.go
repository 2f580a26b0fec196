package tectia

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Tectia's ip-address, host and application are regular expressions. The
// converters below accept only forms whose meaning shunt can state
// exactly, and return a reason for everything else. Tectia compares a
// pattern with the whole address or name (the documented "capture
// everything" pattern is ".*"), so leading ^ and trailing $ change nothing
// and are dropped.

// ipPattern converts an ip-address pattern. any reports a pattern that
// matches every address (shunt: omit destinations).
func ipPattern(p string) (dest string, any bool, why string) {
	s := anchorless(strings.TrimSpace(p))
	switch s {
	case "", ".*", ".+":
		return "", true, ""
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is6() && a.Zone() == "" && !strings.ContainsAny(s, ".") {
		return a.String(), false, "" // a literal IPv6 address: no regex syntax in it
	}
	toks, ok := ipTokens(s)
	if !ok {
		return "", false, fmt.Sprintf("ip-address %s is a regular expression with no exact shunt equivalent; %s", quote(p), ipForms)
	}
	// Split into octet fields at the separators, noting a trailing ".*".
	var fields []ipTok
	var seps []bool // escaped?
	tail := false
	expectField := true
	for i, t := range toks {
		switch t.kind {
		case tokTail:
			if i != len(toks)-1 {
				return "", false, fmt.Sprintf("ip-address %s has %s before its end, where it matches any part of an octet; %s", quote(p), quote(t.text), ipForms)
			}
			if expectField && len(fields) == 0 {
				return "", true, ""
			}
			if !expectField {
				last := fields[len(fields)-1].text
				return "", false, fmt.Sprintf("ip-address %s ends inside an octet, so it also matches octets that only begin with %s (such as %s0): for a whole-octet prefix write %s", quote(p), last, last, escapedHint(fields))
			}
			tail = true
		case tokSep, tokSepAny:
			if expectField {
				return "", false, fmt.Sprintf("ip-address %s has an empty octet; %s", quote(p), ipForms)
			}
			seps = append(seps, t.kind == tokSep)
			expectField = true
		default:
			if !expectField {
				return "", false, fmt.Sprintf("ip-address %s: %s does not start a new octet; %s", quote(p), quote(t.text), ipForms)
			}
			fields = append(fields, t)
			expectField = false
		}
	}
	if !tail && expectField {
		return "", false, fmt.Sprintf("ip-address %s ends with a separator; %s", quote(p), ipForms)
	}
	if tail && len(fields) > 3 || !tail && len(fields) != 4 {
		return "", false, fmt.Sprintf("ip-address %s has %d octets, so it never matches an IPv4 address; %s", quote(p), len(fields)+btoi(tail), ipForms)
	}
	if tail {
		// With ".*" after it, an unescaped '.' could match a digit and
		// join two octets (1.1\..* also matches 101.x.x.x), so every
		// separator must be \. here. Without a tail it cannot: the other
		// characters are digits and an address needs exactly three dots,
		// so each separator, escaped or not, can only have matched a dot.
		for _, esc := range seps {
			if !esc {
				return "", false, fmt.Sprintf("ip-address %s has an unescaped '.', which matches any character, so it also matches addresses outside the prefix it spells: escape it, e.g. %s", quote(p), escapedHint(fields))
			}
		}
	}
	// Literal octets first, then octets of any value.
	var b [4]byte
	bits := 0
	anyOctet := false
	for i, f := range fields {
		if f.kind == tokClass {
			anyOctet = true
			continue
		}
		if anyOctet {
			return "", false, fmt.Sprintf("ip-address %s has a literal octet after an octet of any value: no single network matches it", quote(p))
		}
		n, err := strconv.Atoi(f.text)
		if err != nil || n > 255 || len(f.text) > 1 && f.text[0] == '0' {
			return "", false, fmt.Sprintf("ip-address %s: octet %q is not written as in an address (0-255, no leading zeros), so the pattern never matches", quote(p), f.text)
		}
		b[i] = byte(n)
		bits += 8
	}
	if bits == 0 {
		return "", true, ""
	}
	a := netip.AddrFrom4(b)
	if bits == 32 {
		return a.String(), false, ""
	}
	return netip.PrefixFrom(a, bits).String(), false, ""
}

const ipForms = `convertible forms: a literal address (10\.1\.2\.3), ".*", or a whole-octet prefix (10\.1\..*)`

type tokKind int

const (
	tokDigits tokKind = iota // a literal octet
	tokClass                 // an octet of any value: \d+, [0-9]+, \d{1,3}, [0-9]{1,3}
	tokSep                   // \.
	tokSepAny                // . (any character)
	tokTail                  // .* or .+ at the end
)

type ipTok struct {
	kind tokKind
	text string
}

var octetClasses = []string{`\d+`, `[0-9]+`, `\d{1,3}`, `[0-9]{1,3}`, `\d*`, `[0-9]*`}

func ipTokens(s string) ([]ipTok, bool) {
	var toks []ipTok
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			toks = append(toks, ipTok{tokDigits, s[i:j]})
			i = j
		case strings.HasPrefix(s[i:], `\.`):
			toks = append(toks, ipTok{tokSep, `\.`})
			i += 2
		case strings.HasPrefix(s[i:], ".*"), strings.HasPrefix(s[i:], ".+"):
			toks = append(toks, ipTok{tokTail, s[i : i+2]})
			i += 2
		case c == '.':
			toks = append(toks, ipTok{tokSepAny, "."})
			i++
		default:
			found := false
			for _, cl := range octetClasses {
				if strings.HasPrefix(s[i:], cl) {
					toks = append(toks, ipTok{tokClass, cl})
					i += len(cl)
					found = true
					break
				}
			}
			if !found {
				return nil, false
			}
		}
	}
	return toks, true
}

func escapedHint(fields []ipTok) string {
	var parts []string
	for _, f := range fields {
		parts = append(parts, f.text)
	}
	return strings.Join(parts, `\.`) + `\..*`
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// anchorless drops a leading ^ and a trailing unescaped $.
func anchorless(s string) string {
	s = strings.TrimPrefix(s, "^")
	if strings.HasSuffix(s, "$") && !strings.HasSuffix(s, `\$`) {
		s = s[:len(s)-1]
	}
	return s
}

var (
	// A host name with its dots escaped or not: each '.' is read as the
	// dot the user meant. (Unescaped, it also matches any character in
	// its place, e.g. mail.example.com matches mail-example.com: no
	// configuration means that.)
	literalHost = regexp.MustCompile(`^[A-Za-z0-9_-]+((\\\.|\.)[A-Za-z0-9_-]+)*$`)
	// ".*\." + host: any name under host (not host itself).
	subdomains = regexp.MustCompile(`^\.[*+]\\\.(.+)$`)
	// "(.*\.)?" + host: host and any name under it.
	hostAndSubdomains = regexp.MustCompile(`^\(\.\*\\\.\)\?(.+)$`)
)

// hostPattern converts a rule's host pattern into shunt destinations: host
// names, and "*.domain" for any name under domain. any reports a pattern
// that matches every name.
func hostPattern(p string) (dests []string, any bool, why string) {
	s := anchorless(strings.TrimSpace(p))
	switch s {
	case "", ".*", ".+":
		return nil, true, ""
	}
	host := func(h string) string { return strings.ToLower(strings.ReplaceAll(h, `\.`, ".")) }
	both := hostAndSubdomains.FindStringSubmatch(s)
	under := subdomains.FindStringSubmatch(s)
	switch {
	case literalHost.MatchString(s):
		dests = []string{host(s)}
	case both != nil && literalHost.MatchString(both[1]):
		dests = []string{host(both[1]), "*." + host(both[1])}
	case under != nil && literalHost.MatchString(under[1]):
		dests = []string{"*." + host(under[1])}
	case strings.HasPrefix(s, ".*.") && literalHost.MatchString(s[3:]):
		dom := host(s[3:])
		return nil, false, fmt.Sprintf(`host %s: the '.' after .* is unescaped and matches any character, so this also matches names such as my%s: for the names under %s write .*\.%s`, quote(p), dom, dom, strings.ReplaceAll(dom, ".", `\.`))
	case strings.HasPrefix(s, ".*") && literalHost.MatchString(s[2:]):
		dom := host(s[2:])
		return nil, false, fmt.Sprintf(`host %s also matches names that merely end in %s (such as my%s), which shunt cannot express: for the names under %s write .*\.%s`, quote(p), dom, dom, dom, strings.ReplaceAll(dom, ".", `\.`))
	default:
		return nil, false, fmt.Sprintf(`host %s is a regular expression with no exact shunt equivalent; convertible forms: a name (mail\.example\.com), ".*", any name under a domain (.*\.example\.com), or a domain and the names under it ((.*\.)?example\.com)`, quote(p))
	}
	// shunt takes what it can resolve: an address, or a DNS host name.
	for _, d := range dests {
		if _, err := netip.ParseAddr(d); err == nil {
			continue
		}
		if name := strings.TrimPrefix(d, "*."); !validHostName(name) || looksNumeric(name) {
			return nil, false, fmt.Sprintf("host %s: %q is not a host name shunt can resolve (labels of letters, digits and inner hyphens, between dots)", quote(p), name)
		}
	}
	return dests, false, ""
}

var hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHostName is shunt's test of a DNS host name (its configuration
// accepts no other): at least one label, 253 characters at most.
func validHostName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// looksNumeric catches mistyped addresses ("10.1.2"), which shunt refuses
// as host names.
func looksNumeric(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}

// Tectia's application is an egrep regular expression compared with the
// program's name (on Windows, the executable's file name, outlook.exe,
// case-insensitively). shunt matches a program's name or path exactly.
var (
	// A program name, its dots escaped or not (an unescaped dot in a
	// name is read as the dot that was meant, as in host).
	appName = regexp.MustCompile(`^[A-Za-z0-9_](?:[A-Za-z0-9 _-]|\\\.|\.)*$`)
	// An outer group around alternatives: (a|b).
	appGroup = regexp.MustCompile(`^\(([^()]*)\)$`)
)

const appForms = `convertible forms: a program name (thunderbird), .*name.* (converted to the name), or alternatives of these (thunderbird|evolution)`

// appPattern converts a rule's application into shunt application names;
// notes say where shunt's match differs from Tectia's.
func appPattern(p string) (apps []string, any bool, notes []string, why string) {
	s := anchorless(strings.TrimSpace(p))
	switch s {
	case "", ".*", ".+":
		return nil, true, nil, ""
	}
	if m := appGroup.FindStringSubmatch(s); m != nil {
		s = m[1]
	}
	for _, alt := range strings.Split(s, "|") {
		core, contains := alt, false
		if len(alt) > 4 && strings.HasPrefix(alt, ".*") && strings.HasSuffix(alt, ".*") && !strings.HasSuffix(alt, `\.*`) {
			core, contains = alt[2:len(alt)-2], true
		}
		if !appName.MatchString(core) || strings.HasSuffix(core, " ") {
			if strings.Contains(alt, ",") {
				return nil, false, nil, fmt.Sprintf("application %s: a comma is an ordinary character in a regular expression, so this names one program with a comma in its name: for several programs write a|b; %s", quote(p), appForms)
			}
			return nil, false, nil, fmt.Sprintf("application %s is a regular expression with no exact shunt equivalent; %s", quote(p), appForms)
		}
		name := strings.ReplaceAll(core, `\.`, ".")
		if slices.Contains(apps, name) {
			continue
		}
		apps = append(apps, name)
		if contains {
			notes = append(notes, fmt.Sprintf("application %s: Tectia matches every program whose name contains %s; shunt matches program names exactly, so the rule names %s only, and the flows of other programs go on to the later rules: add them to the rule by hand", quote(alt), name, name))
		}
		if strings.HasSuffix(strings.ToLower(name), ".exe") {
			notes = append(notes, fmt.Sprintf("application %s is a Windows program name (Windows only): shunt looks programs up on Linux, where they have no .exe, and matches only a program named exactly %s: write the Linux program's name instead (often the name without .exe, here %s)", name, name, name[:len(name)-4]))
		}
	}
	return apps, false, notes, ""
}

// portsPattern converts ports: one port, a range "lo-hi", or a
// comma-separated list of them. Empty (and "all", "any" or "*") means
// every port.
func portsPattern(p string) (ports []string, any bool, why string) {
	s := strings.TrimSpace(p)
	switch strings.ToLower(s) {
	case "", "all", "any", "*":
		return nil, true, ""
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		l, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
		h, err2 := l, error(nil)
		if isRange {
			h, err2 = strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
		}
		if err1 != nil || err2 != nil || l == 0 || l > h {
			return nil, false, fmt.Sprintf("ports %s: %q is not a port or range within 1-65535 (write e.g. 25, 21-25, or 25,110,143)", quote(p), part)
		}
		if l == h {
			ports = append(ports, strconv.FormatUint(l, 10))
		} else {
			ports = append(ports, fmt.Sprintf("%d-%d", l, h))
		}
	}
	return ports, false, ""
}

// quote writes a pattern between double quotes as it is, so that its
// backslashes read as written.
func quote(s string) string {
	if strings.ContainsAny(s, "\"\n\r\t") {
		return strconv.Quote(s)
	}
	return `"` + s + `"`
}
