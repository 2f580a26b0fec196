package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/dns"
	"github.com/shunt-dev/shunt/internal/errs"
	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/netstack"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/state"
)

// OSDNS points the system's resolver at shunt's DNS server, and back
// (platform.OSDNS).
type OSDNS interface {
	Set(platform.DNSConfig) error
	// Upstreams are the resolvers the system had before shunt changed
	// anything.
	Upstreams() []netip.AddrPort
	Mode() string
	Close() error
}

// FakeIPFile is the fake-IP table's file in state_dir.
const FakeIPFile = "fake-ips.json"

// upstreams are the resolvers the system had, once Start has read them:
// shunt's own look-ups (the bypass dialer's, the host-name rules') ask
// them, never the system's resolver, which may be shunt by then.
type upstreams struct {
	p atomic.Pointer[[]netip.AddrPort]
}

func (u *upstreams) set(s []netip.AddrPort) { u.p.Store(&s) }

func (u *upstreams) get() []netip.AddrPort {
	if s := u.p.Load(); s != nil {
		return *s
	}
	return nil
}

// dnsPolicy is what shunt's DNS server answers itself: the host names and
// domains that tunnel and block rules name get fake IPs; the
// resolve_through domains are asked of the far side.
func (p *Plan) dnsPolicy() dns.Policy {
	var pol dns.Policy
	for _, r := range p.Rules {
		if r.Action == router.Direct {
			continue
		}
		for _, h := range r.Hosts {
			if !slices.Contains(pol.Hosts, h) {
				pol.Hosts = append(pol.Hosts, h)
			}
		}
		for _, d := range r.Domains {
			d = strings.TrimPrefix(d, "*.")
			if !slices.Contains(pol.Domains, d) {
				pol.Domains = append(pol.Domains, d)
			}
		}
	}
	for _, rt := range p.Config.DNS.ResolveThrough {
		server, err := netip.ParseAddrPort(rt.Server)
		if err != nil {
			continue // config checked it
		}
		pol.Through = append(pol.Through, dns.Through{Domains: rt.Domains, Profile: rt.Profile, Server: server})
	}
	return pol
}

// routingDomains are the domains whose names the system's resolver must
// send to shunt, where it can route by domain (systemd-resolved).
func (p *Plan) routingDomains() []string {
	pol := p.dnsPolicy()
	out := slices.Concat(pol.Hosts, pol.Domains)
	for _, t := range pol.Through {
		out = append(out, t.Domains...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dnsRoutes are what split DNS routes to the TUN device: the fake ranges
// and the DNS server's own addresses.
func (p *Plan) dnsRoutes() []netip.Prefix {
	if !p.Config.DNS.Serve {
		return nil
	}
	out := p.Config.DNS.Prefixes()
	for _, a := range netlayout.DNSAddrs() {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// routes are everything the plan routes to the TUN device.
func (p *Plan) routes(resolved func(string) []netip.Addr) []netip.Prefix {
	return slices.Concat(p.Captured(resolved), p.dnsRoutes())
}

// splitDNS is shunt's DNS server and the OS resolver's configuration
// while they run.
type splitDNS struct {
	server *dns.Server
	os     OSDNS
	log    logrus.FieldLogger

	mu       sync.Mutex
	closers  []func() error // the listeners on the TUN side
	restored bool
	serving  sync.WaitGroup
}

// openDNS opens the OS's resolver configuration (after the clean-up of a
// crashed run) and reads the upstreams, then the DNS server: nothing on
// the system changes yet.
func (e *Engine) openDNS(plan *Plan) (*splitDNS, error) {
	cfg := plan.Config
	osdns, err := e.deps.OSDNS(platform.DNSOptions{Mode: cfg.DNS.Mode, StateDir: cfg.StateDir, Log: e.log})
	if err != nil {
		return nil, err
	}
	up := osdns.Upstreams()
	if len(up) == 0 {
		e.log.Warn("DNS: the system has no resolver shunt could forward to: names that shunt does not answer itself will fail (SERVFAIL)")
	}
	e.upstreams.set(up)
	srv, err := dns.New(dns.Options{
		FakeRanges: cfg.DNS.Prefixes(),
		StateFile:  filepath.Join(cfg.StateDir, FakeIPFile),
		Upstreams:  up,
		Dialer:     e.deps.Dialer,
		Tunnels:    e.broker,
		Policy:     plan.dnsPolicy(),
		Log:        e.log.WithField("part", "dns"),
	})
	if err != nil {
		osdns.Close()
		return nil, err
	}
	return &splitDNS{server: srv, os: osdns, log: e.log}, nil
}

// serve listens on the DNS server's addresses on the TUN side, then
// points the system's resolver at them.
func (d *splitDNS) serve(stack *netstack.Stack, plan *Plan, device string) error {
	for _, a := range netlayout.DNSAddrs() {
		ap := netip.AddrPortFrom(a, 53)
		pc, err := stack.ListenUDP(ap)
		if err != nil {
			return fmt.Errorf("DNS server on %v: %w", ap, err)
		}
		l, err := stack.ListenTCP(ap)
		if err != nil {
			pc.Close()
			return fmt.Errorf("DNS server on %v: %w", ap, err)
		}
		d.mu.Lock()
		d.closers = append(d.closers, pc.Close, l.Close)
		d.mu.Unlock()
		d.serving.Add(1)
		go func(pc net.PacketConn, l net.Listener) {
			defer d.serving.Done()
			if err := d.server.Serve(pc, l); err != nil && !errors.Is(err, net.ErrClosed) {
				d.log.WithError(err).WithField("address", ap.String()).Error("DNS server stopped")
			}
		}(pc, l)
	}
	return d.set(plan, device)
}

// set points the system's resolver at shunt for plan's names.
func (d *splitDNS) set(plan *Plan, device string) error {
	c := platform.DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: plan.routingDomains(), Device: device}
	if err := d.os.Set(c); err != nil {
		return fmt.Errorf("point the system's resolver at shunt (dns.mode %s): %w", plan.Config.DNS.Mode, err)
	}
	fields := logrus.Fields{"mode": d.os.Mode(), "server": netlayout.DNS4.String()}
	if d.os.Mode() != platform.DNSModeFile {
		// Per-domain modes: only these names go to shunt.
		fields["domains"] = c.Domains
	}
	d.log.WithFields(fields).Info("DNS: names go to shunt's DNS server")
	return nil
}

// reload puts plan's names in force.
func (d *splitDNS) reload(plan *Plan, device string) error {
	if err := d.server.SetPolicy(plan.dnsPolicy(), plan.Config.DNS.Prefixes()); err != nil {
		return err
	}
	return d.set(plan, device)
}

// restore puts the system's resolver back, once.
func (d *splitDNS) restore() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.restored {
		return nil
	}
	d.restored = true
	if err := d.os.Close(); err != nil {
		return fmt.Errorf("restoring the system's DNS settings: %w", err)
	}
	return nil
}

// close restores the resolver, stops serving and saves the table.
func (d *splitDNS) close() error {
	// The server first: a listener closed under it would read as an error.
	errList := []error{d.restore(), d.server.Close()}
	d.mu.Lock()
	for _, c := range d.closers {
		c()
	}
	d.closers = nil
	d.mu.Unlock()
	d.serving.Wait()
	return errs.Join(errList...)
}

// fakeHosts gives the stack the names behind fake addresses, from the DNS
// server in force (none: no address is fake); Reload may start or stop it.
type fakeHosts struct{ p *atomic.Pointer[dns.Server] }

func (f fakeHosts) Host(a netip.Addr) (string, bool) {
	if s := f.p.Load(); s != nil {
		return s.Host(a)
	}
	return "", false
}

// sameDNS reports whether split DNS can stay as it runs from old to nc,
// with only its names and ranges changing.
func sameDNS(old, nc *config.Config) bool {
	return old.DNS.Serve == nc.DNS.Serve && old.DNS.Mode == nc.DNS.Mode && old.StateDir == nc.StateDir
}

// stopDNSFor stops split DNS before a reload to plan when plan serves no
// DNS, or serves it differently (another mode or state_dir): the
// system's resolver is restored before the DNS routes go.
func (e *Engine) stopDNSFor(old, plan *Plan) error {
	if e.dns == nil || sameDNS(old.Config, plan.Config) {
		return nil
	}
	d := e.dns
	e.dns = nil
	e.dnsLive.Store(nil)
	e.names.far.Store(nil)
	if err := d.close(); err != nil {
		return err
	}
	e.log.Info("DNS: split DNS stopped; the system's resolver is as it was")
	return nil
}

// startDNSFor puts plan's split DNS in force after a reload: new names on
// the running server, or a server started.
func (e *Engine) startDNSFor(plan *Plan) error {
	if !plan.Config.DNS.Serve {
		return nil
	}
	if e.dns != nil {
		return e.dns.reload(plan, e.devName)
	}
	d, err := e.openDNS(plan)
	if err != nil {
		return err
	}
	if err := d.serve(e.stack, plan, e.devName); err != nil {
		d.close()
		return err
	}
	e.dns = d
	e.dnsLive.Store(d)
	e.names.far.Store(d.server)
	return nil
}

// underDomain reports whether name is domain or a name below it.
func underDomain(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// DNSAnswer says how shunt's DNS server answers a name: with a fake
// address (a tunnel or block rule names it), through a resolver on the far
// side (resolve_through), or not itself (forwarded to the upstreams, or no
// split DNS at all).
type DNSAnswer struct {
	Fake    bool
	Through *config.ResolveThrough
}

// AnswerFor says how the plan's DNS server answers name (canonical: lower
// case, no final dot).
func (p *Plan) AnswerFor(name string) DNSAnswer {
	if !p.Config.DNS.Serve {
		return DNSAnswer{}
	}
	return p.answerFor(p.dnsPolicy(), name)
}

// answerFor is AnswerFor with the plan's policy made already.
func (p *Plan) answerFor(pol dns.Policy, name string) DNSAnswer {
	if slices.Contains(pol.Hosts, name) || slices.ContainsFunc(pol.Domains, func(d string) bool { return underDomain(name, d) }) {
		return DNSAnswer{Fake: true}
	}
	for i := range p.Config.DNS.ResolveThrough {
		rt := &p.Config.DNS.ResolveThrough[i]
		if slices.ContainsFunc(rt.Domains, func(d string) bool { return underDomain(name, d) }) {
			return DNSAnswer{Through: rt}
		}
	}
	return DNSAnswer{}
}

// WatchedHosts are the rules' host names that shunt resolves itself, with
// the upstreams, to route their addresses: with split DNS, not those its
// DNS server answers (they would reach a local resolver, and their
// answers there are not what applications get).
func (p *Plan) WatchedHosts() []string {
	if !p.Config.DNS.Serve {
		return p.Config.Hosts()
	}
	pol := p.dnsPolicy()
	var out []string
	for _, h := range p.Config.Hosts() {
		if a := p.answerFor(pol, h); !a.Fake && a.Through == nil {
			out = append(out, h)
		}
	}
	return out
}

// status is split DNS for shunt status.
func (d *splitDNS) status(up []netip.AddrPort, ranges []netip.Prefix) *state.DNS {
	st := d.server.Stats()
	out := &state.DNS{
		Mode:    d.os.Mode(),
		Names:   st.Names,
		Learned: st.Learned,
		Queries: state.DNSQueries{
			Fake: st.Fake, Forwarded: st.Forwarded, Through: st.Through, Failed: st.Failed,
			Refused: st.Refused, Malformed: st.Malformed, NXDomain: st.NXDomain,
		},
		Servers: []string{}, Upstreams: []string{}, FakeRanges: []string{},
	}
	for _, a := range netlayout.DNSAddrs() {
		out.Servers = append(out.Servers, netip.AddrPortFrom(a, 53).String())
	}
	for _, u := range up {
		out.Upstreams = append(out.Upstreams, u.String())
	}
	for _, p := range ranges {
		out.FakeRanges = append(out.FakeRanges, p.String())
	}
	return out
}

// dnsStatus is split DNS's state now, nil when it does not run.
func (e *Engine) dnsStatus() *state.DNS {
	d := e.dnsLive.Load()
	if d == nil {
		return nil
	}
	return d.status(e.upstreams.get(), e.plan.Load().Config.DNS.Prefixes())
}
