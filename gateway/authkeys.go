package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/config"
)

// Error is a problem of a file the gateway reads, at a line (0 when the
// problem is the file's as a whole): config's, so that both read alike.
type Error = config.Error

// AuthorizedKey is one line of an authorized_keys file.
type AuthorizedKey struct {
	Key     ssh.PublicKey
	Comment string
	File    string
	Line    int

	// NoPortForwarding is set by no-port-forwarding, or by restrict
	// without a later port-forwarding: as in sshd, the key may then open
	// no channel at all.
	NoPortForwarding bool
	// PermitOpen lists the destinations the key may open (permitopen=);
	// nil means any the gateway's permit list allows.
	PermitOpen []OpenTarget
	// From is the key's from= pattern list; nil means from anywhere.
	From []Pattern
}

// OpenTarget is one permitopen="host:port". Host "*" is any host; Port 0
// is any port (written *).
type OpenTarget struct {
	Host string
	Port uint16
}

func (o OpenTarget) String() string {
	p := "*"
	if o.Port != 0 {
		p = strconv.Itoa(int(o.Port))
	}
	h := o.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	return h + ":" + p
}

// Pattern is one item of a from= list: a network, or a wildcard pattern
// (* and ?) matched against the address's text; Negated for a leading !.
type Pattern struct {
	Negated bool
	Net     netip.Prefix // valid for an address or CIDR item
	Glob    string       // otherwise
}

// AllowsFrom reports whether a client at addr may use the key, as sshd's
// from= with UseDNS no: a matching negated item refuses, otherwise some
// item must match.
func (k *AuthorizedKey) AllowsFrom(addr netip.Addr) bool {
	if k.From == nil {
		return true
	}
	return matchFrom(k.From, addr)
}

func matchFrom(list []Pattern, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false // no address: nothing to check the list against
	}
	addr = addr.Unmap().WithZone("")
	text := addr.String()
	found := false
	for _, p := range list {
		var m bool
		if p.Net.IsValid() {
			m = p.Net.Contains(addr)
		} else {
			m = globMatch(text, p.Glob)
		}
		if m {
			if p.Negated {
				return false
			}
			found = true
		}
	}
	return found
}

// AllowsOpen reports whether the key may open host:port, as host is
// written in the direct-tcpip request. Names compare literally, as in
// sshd; addresses compare by value.
func (k *AuthorizedKey) AllowsOpen(host string, port uint16) bool {
	if k.NoPortForwarding {
		return false
	}
	if k.PermitOpen == nil {
		return true
	}
	ha, herr := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	for _, o := range k.PermitOpen {
		if o.Port != 0 && o.Port != port {
			continue
		}
		if o.Host == "*" || o.Host == host {
			return true
		}
		if herr == nil {
			if oa, err := netip.ParseAddr(o.Host); err == nil && oa.Unmap() == ha.Unmap() {
				return true
			}
		}
	}
	return false
}

// AuthorizedKeys maps public keys to their lines. A key may appear on
// several lines, each with its own options; a login may use any of them.
type AuthorizedKeys struct {
	byKey map[string][]*AuthorizedKey
	n     int
}

// Lookup returns the entries of key, in file order; nil if it has none.
func (a *AuthorizedKeys) Lookup(key ssh.PublicKey) []*AuthorizedKey {
	if a == nil || key == nil {
		return nil
	}
	return a.byKey[string(key.Marshal())]
}

// Len is the number of entries (lines with a key).
func (a *AuthorizedKeys) Len() int {
	if a == nil {
		return 0
	}
	return a.n
}

// LoadAuthorizedKeys reads and parses the file at path.
func LoadAuthorizedKeys(path string) (*AuthorizedKeys, error) {
	// Whoever can change the file chooses who logs in (sshd's
	// StrictModes).
	if why := (config.Machine{}).OthersMayChange(path); why != "" {
		return nil, &Error{File: path, Msg: "refused: other users can change the authorized keys: " + why}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read the authorized keys: %v", err)}
	}
	return ParseAuthorizedKeys(path, data)
}

// ParseAuthorizedKeys parses an OpenSSH authorized_keys file, naming path
// in errors. Every bad line is an error (an *Error each, joined): a key
// the gateway would accept with fewer restrictions than written must not
// log in, and a key silently skipped is a puzzle for its owner.
func ParseAuthorizedKeys(path string, data []byte) (*AuthorizedKeys, error) {
	a := &AuthorizedKeys{byKey: map[string][]*AuthorizedKey{}}
	var errs []error
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := i + 1
		text := bytes.TrimSpace(raw)
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		key, comment, opts, _, err := ssh.ParseAuthorizedKey(text)
		if err != nil {
			errs = append(errs, &Error{File: path, Line: line, Msg: fmt.Sprintf("not an authorized key (%v): write [options] keytype base64-key [comment], as ssh-keygen prints it in the .pub file", err)})
			continue
		}
		if _, ok := key.(*ssh.Certificate); ok {
			errs = append(errs, &Error{File: path, Line: line, Msg: "a certificate, not a key: list the plain public key (the gateway does not take certificates)"})
			continue
		}
		e := &AuthorizedKey{Key: key, Comment: comment, File: path, Line: line}
		if err := e.applyOptions(opts); err != nil {
			errs = append(errs, &Error{File: path, Line: line, Msg: err.Error()})
			continue
		}
		id := string(key.Marshal())
		a.byKey[id] = append(a.byKey[id], e)
		a.n++
	}
	if errs != nil {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// unsupported are the options the gateway cannot honour, with why.
var unsupported = map[string]string{
	"command":        "the gateway runs no commands",
	"environment":    "the gateway runs no sessions",
	"tunnel":         "the gateway forwards no tun devices",
	"principals":     "the gateway takes no certificates",
	"cert-authority": "the gateway takes no certificates",
	"expiry-time":    "the gateway does not check key expiry",
}

// granting are options that grant what the gateway never offers (a pty,
// agent or X11 forwarding, rc files): accepted, and without effect.
var granting = map[string]bool{
	"agent-forwarding": true, "pty": true, "user-rc": true, "x11-forwarding": true,
	"no-agent-forwarding": true, "no-pty": true, "no-user-rc": true, "no-x11-forwarding": true,
	"no-touch-required": true, "verify-required": true,
}

func (e *AuthorizedKey) applyOptions(opts []string) error {
	for _, opt := range opts {
		name, value, hasValue := strings.Cut(opt, "=")
		lname := strings.ToLower(name)
		if why, ok := unsupported[lname]; ok {
			return fmt.Errorf("option %s: %s; remove it from the line, or serve this key with sshd", name, why)
		}
		if hasValue {
			v, err := dequote(value)
			if err != nil {
				return fmt.Errorf("option %s: %v", name, err)
			}
			switch lname {
			case "permitopen":
				t, err := parseOpenTarget(v)
				if err != nil {
					return fmt.Errorf("option permitopen=%q: %v", v, err)
				}
				e.PermitOpen = append(e.PermitOpen, t)
			case "from":
				if e.From != nil {
					return fmt.Errorf("option from= given twice: merge the patterns into one comma-separated list")
				}
				ps, err := parsePatternList(v)
				if err != nil {
					return fmt.Errorf("option from=%q: %v", v, err)
				}
				e.From = ps
			case "permitlisten":
				// Restricts remote forwarding, which the gateway never
				// allows.
			default:
				return fmt.Errorf("unknown option %s: the gateway honours permitopen=, from=, restrict and no-* options; remove it", name)
			}
			continue
		}
		switch {
		case lname == "restrict" || lname == "no-port-forwarding":
			e.NoPortForwarding = true
		case lname == "port-forwarding":
			e.NoPortForwarding = false
		case granting[lname]:
		case lname == "permitopen" || lname == "from" || lname == "permitlisten":
			return fmt.Errorf("option %s needs a value: write %s=\"...\"", name, lname)
		default:
			return fmt.Errorf("unknown option %s: the gateway honours permitopen=, from=, restrict and no-* options; remove it", name)
		}
	}
	return nil
}

// dequote removes the double quotes around an option's value and undoes
// \" inside, as sshd's opt_dequote.
func dequote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", fmt.Errorf("the value must be in double quotes")
	}
	inner := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c == '\\' && i+1 < len(inner) && inner[i+1] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		if c == '"' {
			return "", fmt.Errorf("a double quote inside the value: write it as \\\"")
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

func parseOpenTarget(v string) (OpenTarget, error) {
	var host, port string
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 || end+1 >= len(v) || v[end+1] != ':' {
			return OpenTarget{}, fmt.Errorf("write host:port, with an IPv6 address in brackets ([2001:db8::1]:22)")
		}
		host, port = v[1:end], v[end+2:]
	} else {
		i := strings.LastIndexByte(v, ':')
		if i < 0 {
			return OpenTarget{}, fmt.Errorf("no port: write host:port (port * for any)")
		}
		host, port = v[:i], v[i+1:]
		if strings.Contains(host, ":") {
			return OpenTarget{}, fmt.Errorf("an IPv6 address goes in brackets: write [%s]:%s", host, port)
		}
	}
	if host == "" {
		return OpenTarget{}, fmt.Errorf("no host: write host:port (host * for any)")
	}
	if strings.ContainsAny(host, " \t,") {
		return OpenTarget{}, fmt.Errorf("host %q has a space or comma: one host:port per permitopen=", host)
	}
	if port == "*" {
		return OpenTarget{Host: host}, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return OpenTarget{}, fmt.Errorf("port %q: write a number from 1 to 65535, or * for any", port)
	}
	return OpenTarget{Host: host, Port: uint16(n)}, nil
}

// parsePatternList reads a from= list: comma-separated items, each an
// address, a CIDR network or a wildcard pattern, with an optional leading
// !. As sshd, a network with bits set past its length is an error.
func parsePatternList(v string) ([]Pattern, error) {
	var out []Pattern
	for item := range strings.SplitSeq(v, ",") {
		p := Pattern{}
		if strings.HasPrefix(item, "!") {
			p.Negated = true
			item = item[1:]
		}
		if item == "" {
			return nil, fmt.Errorf("an empty item: remove the extra comma or !")
		}
		if pfx, err := netip.ParsePrefix(item); err == nil {
			if pfx.Masked() != pfx {
				return nil, fmt.Errorf("%q has bits set past the /%d: write %s", item, pfx.Bits(), pfx.Masked())
			}
			if pfx.Addr().Zone() == "" {
				if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
					pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
				}
				p.Net = pfx
				out = append(out, p)
				continue
			}
		} else if a, err := netip.ParseAddr(item); err == nil && a.Zone() == "" {
			a = a.Unmap()
			p.Net = netip.PrefixFrom(a, a.BitLen())
			out = append(out, p)
			continue
		}
		if strings.Contains(item, "/") {
			return nil, fmt.Errorf("%q is not a CIDR network: write ADDRESS/BITS, e.g. 192.0.2.0/24", item)
		}
		p.Glob = strings.ToLower(item)
		out = append(out, p)
	}
	return out, nil
}

// globMatch matches s against a pattern of * (any run) and ? (any one
// character), in time linear in their product at worst.
func globMatch(s, pattern string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			si++
			pi++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}
