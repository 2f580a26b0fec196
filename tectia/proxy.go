package tectia

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"unicode"

	"go4.org/netipx"

	"github.com/shunt-dev/shunt/broker"
)

// proxyRule is one rule of a Tectia proxy ruleset, as shunt writes it.
type proxyRule struct {
	proxy string   // a proxy URL, or "direct"
	dests []string // shunt proxy_rules destinations; none means any server
}

// parseRuleset reads a proxy ruleset: rules separated by ';', each
// "type(server_url) conditions", where type is direct (with no server),
// socks4, socks5 or http, and the conditions, delimited by commas, are
// what the rule applies to (none: every server). The whole ruleset
// converts or none of it does: a rule left out of a first-match list
// would send servers to the rules after it.
func parseRuleset(s string) (rules []proxyRule, why string) {
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		i := strings.IndexFunc(part, func(r rune) bool { return r == '(' || unicode.IsSpace(r) })
		typ, rest := part, ""
		if i >= 0 {
			typ, rest = part[:i], part[i:]
		}
		typ = strings.ToLower(typ)
		server, hasServer := "", false
		if strings.HasPrefix(rest, "(") {
			end := strings.IndexByte(rest, ')')
			if end < 0 {
				return nil, fmt.Sprintf("rule %s: the server's '(' is not closed", quote(redactRule(part)))
			}
			server, hasServer = strings.TrimSpace(rest[1:end]), true
			rest = rest[end+1:]
		}
		var r proxyRule
		switch typ {
		case "direct":
			if server != "" {
				return nil, fmt.Sprintf("rule %s: direct takes no server", quote(redactRule(part)))
			}
			r.proxy = "direct"
		case "socks4", "socks5", "http":
			if !hasServer || server == "" {
				return nil, fmt.Sprintf("rule %s: %s needs its server, as %s(%s://proxy.example.com:%s)", quote(redactRule(part)), typ, typ, serverScheme(typ), defaultProxyPort(typ))
			}
			u, why := proxyURL(typ, server)
			if why != "" {
				return nil, why
			}
			r.proxy = u
		default:
			return nil, fmt.Sprintf("rule %s: type %q is not direct, socks4, socks5 or http", quote(redactRule(part)), typ)
		}
		for _, cond := range strings.FieldsFunc(rest, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
			d, why := proxyCondition(cond)
			if why != "" {
				return nil, why
			}
			r.dests = append(r.dests, d...)
		}
		rules = append(rules, r)
	}
	return rules, ""
}

func serverScheme(typ string) string {
	if typ == "http" {
		return "http"
	}
	return "socks"
}

func defaultProxyPort(typ string) string {
	if typ == "http" {
		return "8080"
	}
	return "1080"
}

// redactRule hides a password written in a rule's server URL.
func redactRule(s string) string {
	return userinfo.ReplaceAllString(s, "$1xxxxx@")
}

var userinfo = regexp.MustCompile(`(//[^/@:()]*:)[^/@()]*@`)

// proxyURL makes shunt's proxy URL of a Tectia server: a URL (socks:// for
// SOCKS, http:// for HTTP) or host:port.
func proxyURL(typ, server string) (string, string) {
	u := &url.URL{Scheme: typ}
	if strings.Contains(server, "://") {
		v, err := url.Parse(server)
		if err != nil {
			return "", fmt.Sprintf("%s server %q is not a URL", typ, redactRule(server))
		}
		want := serverScheme(typ)
		if s := strings.ToLower(v.Scheme); s != want && s != typ {
			return "", fmt.Sprintf("%s server %s: the scheme is %s, not %s", typ, v.Redacted(), v.Scheme, want)
		}
		if strings.Trim(v.Path, "/") != "" || v.RawQuery != "" || v.Fragment != "" {
			return "", fmt.Sprintf("%s server %s has a path or query, which a proxy server address does not", typ, v.Redacted())
		}
		u.Host, u.User = v.Host, v.User
	} else {
		u.Host = server
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", fmt.Sprintf("%s server %s: write its host and port, e.g. %s(%s://proxy.example.com:%s)", typ, u.Redacted(), typ, serverScheme(typ), defaultProxyPort(typ))
	}
	if _, err := broker.ParseProxy(u.String()); err != nil {
		return "", fmt.Sprintf("%s server: %v", typ, err)
	}
	return u.String(), ""
}

var proxyNamePattern = regexp.MustCompile(`^[A-Za-z0-9*?_-]+(\.[A-Za-z0-9*?_-]+)*$`)

// proxyCondition converts one condition of a proxy rule: an address, a
// range, a network, or a name pattern with * and ?. shunt's proxy rules
// look at the server's name or address, not its port.
func proxyCondition(cond string) ([]string, string) {
	if strings.Count(cond, ":") == 1 {
		_, port, _ := strings.Cut(cond, ":")
		return nil, fmt.Sprintf("condition %q has a port range (:%s): shunt's proxy rules choose by the server's name or address only", cond, port)
	}
	if lo, hi, ok := strings.Cut(cond, "-"); ok {
		a, err1 := netip.ParseAddr(lo)
		b, err2 := netip.ParseAddr(hi)
		if err1 == nil && err2 == nil {
			a, b = a.Unmap(), b.Unmap()
			r := netipx.IPRangeFrom(a, b)
			if !r.IsValid() {
				return nil, fmt.Sprintf("condition %q is not an address range (low to high, one family)", cond)
			}
			var out []string
			for _, p := range r.Prefixes() {
				out = append(out, prefixString(p))
			}
			return out, ""
		}
	}
	if p, err := netip.ParsePrefix(cond); err == nil {
		return []string{prefixString(p.Masked())}, ""
	}
	if a, err := netip.ParseAddr(cond); err == nil && a.Zone() == "" {
		return []string{a.Unmap().String()}, ""
	}
	if proxyNamePattern.MatchString(cond) && !looksNumeric(cond) {
		return []string{strings.ToLower(cond)}, ""
	}
	return nil, fmt.Sprintf("condition %q is not an address (10.1.2.3), range (10.1.2.3-10.1.2.9), network (10.1.0.0/16) or host name pattern (*.example.com)", cond)
}

// prefixString writes a one-address network as the address.
func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
