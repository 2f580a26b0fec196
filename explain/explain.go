// Package explain says what shunt does with a flow and why: whether its
// destination is captured, which rule decides it, and how a tunnel reaches
// its SSH server. `shunt explain` prints it; the control API (and so the
// web console's explain box) answers with the same function.
package explain

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/dns"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/router"
)

// Explanation is what `shunt explain --json` prints, and what the
// control API's POST /v1/explain answers.
type Explanation struct {
	Layers []config.Layer `json:"layers"`
	Notes  []string       `json:"notes,omitempty"`
	// Unresolved are the rules' host names that have no address now:
	// until they do, no flow matches a rule by them, and they capture
	// nothing.
	Unresolved []UnresolvedHost `json:"unresolved,omitempty"`
	Flow       Flow             `json:"flow"`
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

// UnresolvedHost is a rule's host name without an address, and why.
type UnresolvedHost struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

// Flow is the flow explained, as it was asked for and as shunt sees it.
type Flow struct {
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

// Lookup resolves a host name: the system resolver (SystemLookup); a
// fixed table in tests.
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// SystemLookup asks the system's resolver.
func SystemLookup(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Request is the flow to explain: what `shunt explain` takes on its
// command line, and POST /v1/explain in its body.
type Request struct {
	// Destination is DEST[:PORT]: an address or a host name.
	Destination string `json:"destination"`
	// Application is the path (or name) of the application making the
	// connection, User its user (a name or a uid); either may be empty.
	Application string `json:"application,omitempty"`
	User        string `json:"user,omitempty"`
	// From is the flow's source address: another host's is a flow
	// forwarded through this one, which only rules with sources: match.
	From string `json:"from,omitempty"`
}

// Config is what the explanation is of: the plan (the configuration in
// force, converted) and the files it was read from.
type Config struct {
	Plan   *engine.Plan
	Layers []config.Layer
	Notes  []string
	// Locals tells this host's addresses from others', for From (nil:
	// every address is this host's).
	Locals router.Locals
	// Lookup resolves host names; nil is SystemLookup.
	Lookup Lookup
}

// FromLoaded is the Config of a configuration loaded from its files, as
// `shunt explain` reads it.
func FromLoaded(cfg *config.Loaded) (Config, error) {
	plan, err := engine.Convert(cfg.Config)
	if err != nil {
		return Config{}, err
	}
	return Config{Plan: plan, Layers: cfg.Layers, Notes: cfg.Notes}, nil
}

// New decides the flow the way `shunt up` would: it resolves the rules'
// host names as the resolver does at start, routes what the rules
// capture, decides a captured flow by the rules, and finds the way to the
// SSH server as the broker does. `shunt explain` and the control API both
// answer with it.
func New(c Config, req Request) (*Explanation, error) {
	dest, app, usr, from := req.Destination, req.Application, req.User, req.From
	locals, lookup, plan := c.Locals, c.Lookup, c.Plan
	if lookup == nil {
		lookup = SystemLookup
	}
	e := &Explanation{Layers: c.Layers, Notes: c.Notes}
	if e.Layers == nil {
		e.Layers = []config.Layer{}
	}
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
	cfg := plan.Config
	// Only the names shunt resolves itself: the ones its DNS server
	// answers must never reach a local resolver.
	hosts := plan.WatchedHosts()
	answers := map[string][]netip.Addr{}
	failed := map[string]error{}
	for _, h := range hosts {
		addrs, err := resolve(h)
		if err != nil {
			e.Unresolved = append(e.Unresolved, UnresolvedHost{Host: h, Error: lookupError(err)})
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
	if name := strings.ToLower(strings.TrimSuffix(DestHost(dest), ".")); name != "" {
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
			return nil, fmt.Errorf("the source %q is not an IP address", from)
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
func describeCapture(e *Explanation, ex engine.Explanation, addr netip.Addr) {
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
func explainFlow(ef *Flow, dest, app, usr string, hosts []string, answers map[string][]netip.Addr, resolve func(string) ([]netip.Addr, error)) (flowAsked, error) {
	ef.Destination = dest
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		host, portStr = DestHost(dest), ""
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

// DestHost is the host part of DEST[:PORT].
func DestHost(dest string) string {
	if host, _, err := net.SplitHostPort(dest); err == nil {
		return host
	}
	return strings.Trim(dest, "[]")
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
func explainFake(e *Explanation, plan *engine.Plan, f flowAsked, fake []netip.Addr, fakeErr error) *Explanation {
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
