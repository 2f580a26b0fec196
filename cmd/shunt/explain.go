package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/dns"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/router"
)

// explanation is what `shunt explain --json` prints.
type explanation struct {
	Layers []config.Layer `json:"layers"`
	Notes  []string       `json:"notes,omitempty"`
	// Unresolved are the rules' host names that have no address now:
	// until they do, no flow matches a rule by them, and they capture
	// nothing.
	Unresolved []unresolvedHost `json:"unresolved,omitempty"`
	Flow       explainedFlow    `json:"flow"`
	Capture    struct {
		// Captured: the destination is routed to the TUN device, so
		// shunt sees the flow and the rules decide it. Otherwise the
		// flow takes the host's normal route, whatever the rules say.
		Captured bool   `json:"captured"`
		Device   string `json:"device"`
		Prefix   string `json:"prefix,omitempty"` // the captured route it is in
		Rule     string `json:"rule,omitempty"`   // the rule that captures it
		Why      string `json:"why"`
		// Stopped is what happens to the flow while shunt is not
		// running (kill_switch).
		Stopped string `json:"when_stopped,omitempty"`
	} `json:"capture"`
	Steps []router.Step `json:"steps"`
	// Decision is what shunt does with the flow once captured; "none"
	// when the destination has no address.
	Decision struct {
		Index   int    `json:"index"` // 1-based; 0 when no rule matched
		Rule    string `json:"rule,omitempty"`
		Action  string `json:"action"`
		Why     string `json:"why"`
		Profile string `json:"profile,omitempty"`
		Server  string `json:"server,omitempty"`
		// Route is how the SSH server is reached, as the broker will do
		// it: direct, through which proxy (and the proxy rule that
		// chose it), through which jump profile.
		Route string `json:"route,omitempty"`
		// TunnelDown is what happens to a tunnelled flow when its
		// tunnel cannot be set up (on_tunnel_down).
		TunnelDown string `json:"tunnel_down,omitempty"`
	} `json:"decision"`
}

type unresolvedHost struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

type explainedFlow struct {
	// Source is the flow's source address (--from); Forwarded says it
	// is another host's, which routes the flow through this one, so that
	// only rules with sources: covering it match.
	Source      string   `json:"source,omitempty"`
	Forwarded   bool     `json:"forwarded,omitempty"`
	Destination string   `json:"destination"`
	Address     string   `json:"address,omitempty"`
	Port        uint16   `json:"port"`
	Names       []string `json:"names,omitempty"`
	// Unresolved is why the destination, a name, has no address.
	Unresolved string `json:"unresolved,omitempty"`
	// DNS is how shunt's DNS server answers the destination, a name:
	// "fake" (a fake address, and the flow is tunnelled by name) or
	// "through" (asked of a resolver on the far side); empty when it
	// forwards the name, or there is no split DNS.
	DNS string `json:"dns,omitempty"`
	// DNSWhy says it in words.
	DNSWhy      string  `json:"dns_why,omitempty"`
	Application string  `json:"application,omitempty"`
	UID         *uint32 `json:"uid,omitempty"`
}

// lookupFunc resolves a host name: the system resolver, in `shunt
// explain`; a fixed table in tests.
type lookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

func systemLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	var app, usr, from string
	var asJSON bool
	cf, rest, err := parseConfigFlags("explain", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&app, "app", "", "the application `path` (or name) making the connection")
		fs.StringVar(&usr, "user", "", "the `user` (name or uid) making the connection")
		fs.StringVar(&from, "from", "", "the source `address` of the flow: another host's is a flow forwarded through this one (a LAN gateway's), which only rules with sources: match")
		fs.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	})
	if err != nil || len(rest) != 1 {
		return usageExit(err, stderr, "usage: shunt explain [--config FILE]... [--app PATH] [--user USER] [--from ADDR] [--json] DEST[:PORT]")
	}
	cfg, err := cf.load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	var locals router.Locals
	if from != "" {
		locals = engine.ThisHost(logrus.New())
	}
	e, err := newExplanation(cfg, rest[0], app, usr, from, locals, systemLookup)
	if err != nil {
		fmt.Fprintln(stderr, "shunt explain:", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(e)
		return 0
	}
	printExplanation(stdout, e)
	return 0
}

// newExplanation decides the flow to dest the way `shunt up` would: it
// resolves the rules' host names as the resolver does at start, routes what
// the rules capture, decides a captured flow by the rules, and finds the
// way to the SSH server as the broker does.
// A flow from is another host's, forwarded, when locals does not know the
// address (nil locals: every address is this host's).
func newExplanation(cfg *config.Loaded, dest, app, usr, from string, locals router.Locals, lookup lookupFunc) (*explanation, error) {
	e := &explanation{Layers: cfg.Layers, Notes: cfg.Notes}
	resolve := func(host string) ([]netip.Addr, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := lookup(ctx, host)
		if err == nil && len(addrs) == 0 {
			err = errors.New("no address")
		}
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, err
	}
	plan, err := engine.Convert(cfg.Config)
	if err != nil {
		return nil, err
	}
	// Only the names shunt resolves itself: the ones its DNS server
	// answers must never reach a local resolver.
	hosts := plan.WatchedHosts()
	answers := map[string][]netip.Addr{}
	failed := map[string]error{}
	for _, h := range hosts {
		addrs, err := resolve(h)
		if err != nil {
			e.Unresolved = append(e.Unresolved, unresolvedHost{Host: h, Error: lookupError(err)})
			failed[h] = err
		}
		answers[h] = addrs
	}
	lookupDest := func(h string) ([]netip.Addr, error) {
		if addrs, ok := answers[h]; ok {
			return addrs, failed[h]
		}
		return resolve(h)
	}
	var fake []netip.Addr
	var fakeErr error
	if name := strings.ToLower(strings.TrimSuffix(destHost(dest), ".")); name != "" {
		if _, err := netip.ParseAddr(name); err != nil {
			switch a := plan.AnswerFor(name); {
			case a.Fake:
				e.Flow.DNS = "fake"
				fake, fakeErr = fakeAddrs(cfg.StateDir, name)
				lookupDest = func(string) ([]netip.Addr, error) {
					if len(fake) == 0 {
						return nil, errors.New("no fake address yet")
					}
					return fake, nil
				}
			case a.Through != nil:
				e.Flow.DNS = "through"
				e.Flow.DNSWhy = fmt.Sprintf("shunt's DNS server asks %s for %s, through profile %s (dns.resolve_through at %s:%d); shunt explain does not ask it: explain the address it gives instead", a.Through.Server, name, a.Through.Profile, a.Through.File, a.Through.Line)
				lookupDest = func(string) ([]netip.Addr, error) {
					return nil, errors.New("resolved only on the far side")
				}
			}
		}
	}
	f, err := explainFlow(&e.Flow, dest, app, usr, hosts, answers, lookupDest)
	if err != nil {
		return nil, err
	}
	if from != "" {
		src, err := netip.ParseAddr(strings.Trim(from, "[]"))
		if err != nil || src.Zone() != "" {
			return nil, fmt.Errorf("--from %q is not an IP address", from)
		}
		src = src.Unmap()
		f.Src = netip.AddrPortFrom(src, 0)
		f.Forwarded = locals != nil && !src.IsLoopback() && !locals.IsLocal(src)
		e.Flow.Source, e.Flow.Forwarded = src.String(), f.Forwarded
		if f.Forwarded {
			f.Owner = nil // no process of this host's
		}
	}
	e.Capture.Device = cfg.TUN.Name
	if e.Flow.DNS == "fake" {
		return explainFake(e, plan, f, fake, fakeErr), nil
	}
	if e.Flow.Unresolved != "" {
		// No application can connect to a name without an address, so
		// there is no flow for a rule to match: say so, and decide
		// nothing (a rule that names it matches its answers only).
		e.Decision.Action = "none"
		e.Capture.Why = fmt.Sprintf("%s does not resolve (%s): no application can connect to it, so shunt sees no flow", f.host, e.Flow.Unresolved)
		if e.Flow.DNS == "through" {
			e.Capture.Why = e.Flow.DNSWhy
		}
		e.Decision.Why = e.Capture.Why
		return e, nil
	}

	ex := plan.Explain(f.Flow, func(h string) []netip.Addr { return answers[h] })
	describeCapture(e, ex, f.Dst.Addr())
	e.Steps = ex.Steps
	d := ex.Decision
	e.Decision.Action, e.Decision.Why = d.Action.String(), d.Why
	e.Capture.Stopped = ex.Stopped
	if d.Rule == nil {
		return e, nil
	}
	e.Decision.Index, e.Decision.Rule = d.Index+1, d.Rule.Label(d.Index)
	e.Decision.Profile, e.Decision.Server, e.Decision.Route = ex.Profile, ex.Server, ex.Route
	e.Decision.TunnelDown = ex.TunnelDown
	return e, nil
}

// lookupError is a look-up's error without the resolver's wrapping:
// "no such host", "server misbehaving".
func lookupError(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Err
	}
	return err.Error()
}

// describeCapture says whether the kernel routes addr to the TUN device,
// and which rule's destinations make it do so.
func describeCapture(e *explanation, ex engine.Explanation, addr netip.Addr) {
	c := &e.Capture
	addr = addr.Unmap()
	switch {
	case ex.Loopback:
		c.Why = fmt.Sprintf("%s is a loopback address: the kernel delivers it locally, never to the TUN device %s", addr, c.Device)
	case ex.Captured:
		c.Captured, c.Prefix, c.Rule = true, ex.Prefix.String(), ex.CaptureRule
		c.Why = fmt.Sprintf("%s is in %s, routed to the TUN device %s by rule %s", addr, ex.Prefix, c.Device, c.Rule)
	default:
		c.Why = fmt.Sprintf("no tunnel or block rule routes %s to the TUN device %s: the flow takes the host's normal route, and shunt never sees it", addr, c.Device)
	}
}

// flowAsked is the flow to decide and the host it was asked for.
type flowAsked struct {
	router.Flow
	host string
}

// explainFlow builds the flow to decide from the command line; resolve
// gives a destination name's addresses (at least one, or an error). Like
// the data path, it knows a destination's names only from the answers for
// the host names the rules name: a name typed here counts only if it is
// one of them.
func explainFlow(ef *explainedFlow, dest, app, usr string, hosts []string, answers map[string][]netip.Addr, resolve func(string) ([]netip.Addr, error)) (flowAsked, error) {
	ef.Destination = dest
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		host, portStr = destHost(dest), ""
	}
	f := flowAsked{host: host}
	var port uint64
	if portStr != "" {
		if port, err = strconv.ParseUint(portStr, 10, 16); err != nil {
			return f, fmt.Errorf("bad port in %q", dest)
		}
	}
	ef.Port = uint16(port)
	addr, err := netip.ParseAddr(host)
	if err != nil {
		addrs, err := resolve(strings.ToLower(strings.TrimSuffix(host, ".")))
		if err != nil {
			ef.Unresolved = lookupError(err)
		} else {
			addr = addrs[0]
		}
	}
	addr = addr.Unmap()
	if addr.IsValid() {
		ef.Address = addr.String()
		for _, h := range hosts {
			if slices.Contains(answers[h], addr) {
				f.Names = append(f.Names, h)
			}
		}
	}
	ef.Names = f.Names
	f.Dst = netip.AddrPortFrom(addr, uint16(port))
	if app != "" || usr != "" {
		o := &router.Owner{NoUID: true}
		if app != "" {
			o.Exe, o.Name = app, filepath.Base(app)
			ef.Application = app
		}
		if usr != "" {
			uid, err := strconv.ParseUint(usr, 10, 32)
			if err != nil {
				u, lerr := user.Lookup(usr)
				if lerr != nil {
					return f, fmt.Errorf("unknown user %q", usr)
				}
				uid, _ = strconv.ParseUint(u.Uid, 10, 32)
			}
			id := uint32(uid)
			o.UID, o.NoUID, ef.UID = id, false, &id
		}
		f.Owner = o
	}
	return f, nil
}

// destHost is the host part of DEST[:PORT].
func destHost(dest string) string {
	if host, _, err := net.SplitHostPort(dest); err == nil {
		return host
	}
	return strings.Trim(dest, "[]")
}

func printExplanation(w io.Writer, e *explanation) {
	for _, l := range e.Layers {
		state := "read"
		if !l.Found {
			state = "absent"
		}
		fmt.Fprintf(w, "%-7s %s (%s)\n", l.Role, l.Path, state)
	}
	for _, n := range e.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, u := range e.Unresolved {
		fmt.Fprintf(w, "note: %s does not resolve (%s): until it does, no flow matches a rule by that name, and it captures nothing\n", u.Host, u.Error)
	}
	f := e.Flow
	what := f.Destination
	if _, err := netip.ParseAddr(destHost(f.Destination)); err != nil && f.Address != "" {
		what += " (" + f.Address + ")"
	}
	if f.Port == 0 {
		what += ", no port given: rules that name ports do not match"
	}
	if f.Application != "" {
		what += ", application " + f.Application
	}
	if f.UID != nil {
		what += fmt.Sprintf(", uid %d", *f.UID)
	}
	switch {
	case f.Application != "" && f.UID == nil:
		what += ", user not given: rules that name users do not match"
	case f.Application == "" && f.UID != nil:
		what += ", application not given: rules that name applications do not match"
	}
	from := ""
	switch {
	case f.Forwarded:
		from = " from " + f.Source + " (another host's address: a flow it routes through this one, which only rules with sources: covering it match)"
	case f.Source != "":
		from = " from " + f.Source + " (this host's address)"
	}
	fmt.Fprintf(w, "\nflow%s to %s\n", from, what)
	if f.DNSWhy != "" && f.DNS != "through" {
		fmt.Fprintf(w, "dns: %s\n", f.DNSWhy)
	}
	d := e.Decision
	if d.Action == "none" {
		fmt.Fprintf(w, "\nno flow: %s\n", d.Why)
		return
	}
	c := e.Capture
	if c.Captured {
		fmt.Fprintf(w, "captured: %s\n\n", c.Why)
	} else {
		fmt.Fprintf(w, "not captured: %s\n\n", c.Why)
	}
	for _, s := range e.Steps {
		verdict := "no   "
		if s.Matched {
			verdict = "MATCH"
		}
		fmt.Fprintf(w, "  %s  rule %-20s %s\n", verdict, s.Label, s.Why)
	}
	if len(e.Steps) > 0 {
		fmt.Fprintln(w)
	}
	if !c.Captured {
		fmt.Fprint(w, "normal route: not captured, so shunt does not see the flow")
		switch {
		case d.Index == 0:
		case d.Action == "direct":
			fmt.Fprintf(w, " (rule %s would send it direct too)", d.Rule)
		case strings.Contains(c.Why, "loopback"):
			fmt.Fprintf(w, "; rule %s would %s it, but loopback addresses are never captured", d.Rule, d.Action)
		default:
			fmt.Fprintf(w, "; rule %s would %s it, but matches it only by a *.domain wildcard, and wildcards capture nothing by route: add the host name or its network to a tunnel or block rule", d.Rule, d.Action)
		}
		fmt.Fprintln(w)
		return
	}
	switch {
	case d.Index == 0 && f.Forwarded:
		fmt.Fprintf(w, "refused: %s\n", d.Why)
	case d.Index == 0 && strings.HasPrefix(d.Why, "application "):
		fmt.Fprintf(w, "%s: %s\n", d.Action, d.Why)
	case d.Index == 0:
		fmt.Fprintln(w, "direct: captured, but no rule matches: shunt connects it directly, not through a tunnel")
	case d.Action == "tunnel":
		fmt.Fprintf(w, "tunnel (rule %s) through profile %s: %s\n", d.Rule, d.Profile, d.Route)
		if d.TunnelDown != "" {
			fmt.Fprintf(w, "tunnel down: %s\n", d.TunnelDown)
		}
	case d.Action == "block":
		fmt.Fprintf(w, "block (rule %s): the application sees a refused connection\n", d.Rule)
	default:
		fmt.Fprintf(w, "direct (rule %s)\n", d.Rule)
	}
	if c.Stopped != "" {
		fmt.Fprintf(w, "shunt stopped: %s\n", c.Stopped)
	}
}

// fakeAddrs are the fake addresses name holds in the table a running (or
// the last) shunt keeps in stateDir, IPv4 first.
func fakeAddrs(stateDir, name string) ([]netip.Addr, error) {
	table, err := dns.ReadTable(filepath.Join(stateDir, engine.FakeIPFile))
	if err != nil {
		return nil, err
	}
	addrs := table[name]
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		if a.Is4() == b.Is4() {
			return 0
		}
		if a.Is4() {
			return -1
		}
		return 1
	})
	return addrs, nil
}

// explainFake explains a flow to a name shunt's DNS server answers with a
// fake address: the fake ranges are routed to the TUN device, and the rules
// decide the flow by its name.
func explainFake(e *explanation, plan *engine.Plan, f flowAsked, fake []netip.Addr, fakeErr error) *explanation {
	ranges := plan.Config.DNS.Prefixes()
	var rs []string
	for _, p := range ranges {
		rs = append(rs, p.String())
	}
	have := "gets a fake address from " + strings.Join(rs, " or ") + " at its first look-up"
	switch {
	case fakeErr != nil:
		have = fmt.Sprintf("gets a fake address from %s (the table of fake addresses cannot be read: %v)", strings.Join(rs, " or "), fakeErr)
	case len(fake) > 0:
		var as []string
		for _, a := range fake {
			as = append(as, a.String())
		}
		have = "has the fake address " + strings.Join(as, " and ")
		for _, p := range ranges {
			if p.Contains(fake[0]) {
				e.Capture.Prefix = p.String()
			}
		}
	}
	e.Flow.DNSWhy = fmt.Sprintf("a rule names %s, so shunt's DNS server answers it itself: it %s, and the flow to it carries the name", f.host, have)
	e.Flow.Unresolved = ""
	e.Capture.Captured = true
	e.Capture.Rule = "split DNS"
	e.Capture.Why = fmt.Sprintf("%s %s; the fake ranges are routed to the TUN device %s", f.host, have, e.Capture.Device)
	f.Flow.Host = f.host
	ex := plan.Explain(f.Flow, nil)
	e.Steps = ex.Steps
	d := ex.Decision
	e.Decision.Action, e.Decision.Why = d.Action.String(), d.Why
	e.Capture.Stopped = ex.Stopped
	if d.Rule == nil {
		return e
	}
	e.Decision.Index, e.Decision.Rule = d.Index+1, d.Rule.Label(d.Index)
	e.Decision.Profile, e.Decision.Server, e.Decision.Route = ex.Profile, ex.Server, ex.Route
	e.Decision.TunnelDown = ex.TunnelDown
	if d.Action == router.Tunnel {
		e.Decision.Route += fmt.Sprintf("; the channel is opened to %s by name, and the SSH server resolves it", net.JoinHostPort(f.host, strconv.Itoa(int(f.Dst.Port()))))
	}
	return e
}
