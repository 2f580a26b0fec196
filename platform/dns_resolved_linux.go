package platform

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The systemd-resolved manager: shunt's server becomes the DNS server of
// the TUN link, and shunt's domains the link's routing domains
// (resolvectl domain TUN '~corp.example'), over D-Bus
// (org.freedesktop.resolve1.Manager, systemd-resolved.service(8)). Only
// names under those domains come to shunt; the others go where they went.
// With no domains, the link gets the routing domain "~." and the default
// route: resolved then prefers the link for every name that no other link
// claims with a more specific domain (a network's own search domain), and
// shunt forwards what it does not answer. "~." is what makes the link win
// over the other default-route links; without it resolved would send each
// name to every default-route link at once, shunt's and the others.
//
// resolved keeps link settings in memory, and in /run/systemd/resolve/netif/
// for its own restarts; when they are lost anyway (resolved crashed, or
// the file is gone), the link would answer nothing, so shunt watches the
// bus name and applies its settings again to each new resolved.
//
// Close reverts the link (RevertLink); when shunt dies, the TUN device
// goes with it, and resolved forgets the link's settings itself.

const (
	resolvedBusName = "org.freedesktop.resolve1"
	resolvedPath    = dbus.ObjectPath("/org/freedesktop/resolve1")
	resolvedManager = "org.freedesktop.resolve1.Manager"
	resolvedLink    = "org.freedesktop.resolve1.Link"
	// resolvedNoSuchLink is resolved's error for an index it does not
	// know, as when the device is gone.
	resolvedNoSuchLink = "org.freedesktop.resolve1.NoSuchLink"
	// resolvedStub is resolved's stub resolver, the upstream of last
	// resort (see readResolvedUpstreams).
	resolvedStubAddr = "127.0.0.53:53"
	// busTimeout bounds each D-Bus call: a hung resolved must not hang
	// shunt's start or stop.
	busTimeout = 20 * time.Second
)

type resolvedDNS struct {
	conn *dbus.Conn
	obj  dbus.BusObject
	log  logrus.FieldLogger

	watching chan struct{} // closed when watch returns; nil without a watch

	mu       sync.Mutex
	ifindex  int       // the link shunt configured; 0 before Set
	last     DNSConfig // what Set applied last
	up       []netip.AddrPort
	stubOnly bool // up is only resolved's stub
	closed   bool
}

func newResolvedDNS(opts DNSOptions) (_ *resolvedDNS, err error) {
	conn, err := opts.Bus()
	if err != nil {
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	r := &resolvedDNS{conn: conn, obj: conn.Object(resolvedBusName, resolvedPath), log: opts.Log}
	// Reading its servers is also the check that resolved answers.
	up, stubOnly, err := r.readUpstreams(0)
	if err != nil {
		return nil, fmt.Errorf("systemd-resolved does not answer on the system bus: %w", err)
	}
	r.up, r.stubOnly = up, stubOnly
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged"), dbus.WithMatchArg(0, resolvedBusName)); err != nil {
		r.log.WithError(err).Warn("systemd-resolved: cannot watch for its restarts; after one, names may no longer come to shunt")
	} else {
		ch := make(chan *dbus.Signal, 16)
		conn.Signal(ch)
		r.watching = make(chan struct{})
		go r.watch(ch)
	}
	return r, nil
}

// watch applies the last Set again whenever resolved takes its bus name
// anew (it restarted). It returns when the connection closes (Close),
// which closes ch.
func (r *resolvedDNS) watch(ch <-chan *dbus.Signal) {
	defer close(r.watching)
	for sig := range ch {
		if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || len(sig.Body) != 3 {
			continue // the bus's NameAcquired and the like
		}
		name, _ := sig.Body[0].(string)
		owner, _ := sig.Body[2].(string)
		if name != resolvedBusName || owner == "" {
			continue
		}
		r.mu.Lock()
		if !r.closed && r.ifindex != 0 {
			if err := r.apply(r.ifindex, r.last); err != nil {
				r.log.WithError(err).Error("systemd-resolved restarted, and shunt could not configure its link again: names no longer come to shunt")
			} else {
				r.log.Info("systemd-resolved restarted: configured shunt's link again")
			}
		}
		r.mu.Unlock()
	}
}

func (r *resolvedDNS) Mode() string { return DNSModeResolved }

func (r *resolvedDNS) Upstreams() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.up)
}

func (r *resolvedDNS) call(method string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	return r.obj.CallWithContext(ctx, resolvedManager+"."+method, 0, args...).Err
}

// linkAddr is resolved's (family, address bytes) pair.
type linkAddr struct {
	Family  int32
	Address []byte
}

// linkDomain is resolved's (domain, routing only) pair.
type linkDomain struct {
	Domain      string
	RoutingOnly bool
}

func (r *resolvedDNS) Set(cfg DNSConfig) error {
	if err := checkDNSConfig(cfg); err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(cfg.Device)
	if err != nil {
		return fmt.Errorf("systemd-resolved: find the TUN device %q: %w", cfg.Device, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("systemd-resolved manager is closed")
	}
	// The servers may have changed since the start (another network);
	// shunt's own link is not one of them.
	if up, stubOnly, err := r.readUpstreams(ifi.Index); err == nil {
		r.up, r.stubOnly = up, stubOnly
	}
	if len(cfg.Domains) == 0 && r.stubOnly {
		return errors.New("systemd-resolved knows no DNS server but its own stub (127.0.0.53): with every name sent to shunt, shunt would forward them back to itself; configure a DNS server for resolved, give shunt routing domains, or set dns.mode: off")
	}
	if r.ifindex != 0 && r.ifindex != ifi.Index {
		r.revert()
	}
	first := r.ifindex == 0
	if err := r.apply(ifi.Index, cfg); err != nil {
		if first {
			if rerr := r.call("RevertLink", int32(ifi.Index)); rerr != nil && !isDBusError(rerr, resolvedNoSuchLink) {
				r.log.WithError(rerr).Warn("systemd-resolved: could not revert the half-configured link")
			}
		}
		return fmt.Errorf("systemd-resolved, link %s: %w", cfg.Device, err)
	}
	r.ifindex, r.last = ifi.Index, cfg
	return nil
}

// apply configures the link. The order keeps names away from shunt
// until the link is complete: first how the link is used, then its
// domains, and only then its servers.
func (r *resolvedDNS) apply(ifindex int, cfg DNSConfig) error {
	idx := int32(ifindex)
	domains := make([]linkDomain, 0, len(cfg.Domains))
	for _, d := range cfg.Domains {
		c, _ := canonicalDomain(d)
		if !slices.ContainsFunc(domains, func(x linkDomain) bool { return x.Domain == c }) {
			domains = append(domains, linkDomain{c, true})
		}
	}
	if len(domains) == 0 {
		domains = []linkDomain{{".", true}}
	}
	var servers []linkAddr
	for _, a := range sortedNameservers(cfg.Nameservers) {
		fam := int32(unix.AF_INET6)
		if a.Is4() {
			fam = unix.AF_INET
		}
		servers = append(servers, linkAddr{fam, a.AsSlice()})
	}
	// Optional settings: an older resolved lacks some methods, and the
	// link still works without them.
	optional := []struct {
		method, why string
		arg         any
	}{
		// The link answers only its domains unless it routes every name.
		{"SetLinkDefaultRoute", "names outside shunt's domains may come to shunt too", len(cfg.Domains) == 0},
		// Link-local name resolution on a TUN would only leak names
		// to nobody.
		{"SetLinkLLMNR", "LLMNR stays on for the link", "no"},
		{"SetLinkMulticastDNS", "mDNS stays on for the link", "no"},
		// shunt's answers for tunnelled names (fake addresses) are
		// not the signed ones, by design; validation would refuse them.
		{"SetLinkDNSSEC", "a global DNSSEC=yes would refuse shunt's answers", "no"},
		// shunt's server speaks plain DNS on port 53.
		{"SetLinkDNSOverTLS", "a global DNSOverTLS=yes would not reach shunt's server", "no"},
	}
	for _, o := range optional {
		if err := r.call(o.method, idx, o.arg); err != nil {
			r.log.WithError(err).Warnf("systemd-resolved: %s failed: %s", o.method, o.why)
		}
	}
	if err := r.call("SetLinkDomains", idx, domains); err != nil {
		return fmt.Errorf("SetLinkDomains: %w", err)
	}
	if err := r.call("SetLinkDNS", idx, servers); err != nil {
		return fmt.Errorf("SetLinkDNS: %w", err)
	}
	// Answers cached before (say an NXDOMAIN from the local resolver for
	// an internal name) would outlive the change.
	if err := r.call("FlushCaches"); err != nil {
		r.log.WithError(err).Warn("systemd-resolved: FlushCaches failed: answers cached before shunt started stay until they expire")
	}
	return nil
}

// revert undoes Set on the link; a link that is gone (the device closed
// first) has nothing left to undo.
func (r *resolvedDNS) revert() error {
	idx := r.ifindex
	r.ifindex = 0
	if err := r.call("RevertLink", int32(idx)); err != nil && !isDBusError(err, resolvedNoSuchLink) {
		return fmt.Errorf("systemd-resolved: RevertLink %d: %w", idx, err)
	}
	return nil
}

func (r *resolvedDNS) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var err error
	if r.ifindex != 0 {
		err = r.revert()
	}
	r.mu.Unlock()
	r.conn.Close()
	if r.watching != nil {
		<-r.watching
	}
	return err
}

func isDBusError(err error, name string) bool {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name == name
	}
	var dp *dbus.Error
	return errors.As(err, &dp) && dp.Name == name
}

// resolvedServer is an entry of the Manager's DNSEx property; the older DNS
// property lacks port and name.
type resolvedServer struct {
	Ifindex int32
	Family  int32
	Address []byte
	Port    uint16
	Name    string
}

// readUpstreams reads the servers resolved sends names to that no routing
// domain claims: the global ones (resolved.conf's DNS=, or those read from
// a foreign resolv.conf) and those of the links that are default routes,
// less shunt's own link (skip) and addresses. With none, resolved's
// FallbackDNS=, which it then uses itself. With none of those either,
// resolved's stub, 127.0.0.53: that is right only while shunt has routing
// domains. Names under them never need forwarding (shunt answers them),
// and any other name the stub sends where it always did; with "~." it
// would send them back to shunt (stubOnly says so, and Set refuses).
func (r *resolvedDNS) readUpstreams(skip int) (_ []netip.AddrPort, stubOnly bool, _ error) {
	servers, err := r.servers("DNS")
	if err != nil {
		return nil, false, err
	}
	defaultRoute := map[int32]bool{}
	var up []netip.AddrPort
	add := func(s resolvedServer) {
		if s.Ifindex != 0 && int(s.Ifindex) == skip {
			return
		}
		a, ok := netip.AddrFromSlice(s.Address)
		if !ok || isOwnAddr(a) || a.IsUnspecified() {
			return
		}
		if s.Ifindex != 0 {
			dr, seen := defaultRoute[s.Ifindex]
			if !seen {
				dr = r.linkDefaultRoute(s.Ifindex)
				defaultRoute[s.Ifindex] = dr
			}
			if !dr {
				return
			}
			if a.Is6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()) {
				zone := strconv.Itoa(int(s.Ifindex))
				if ifi, err := net.InterfaceByIndex(int(s.Ifindex)); err == nil {
					zone = ifi.Name
				}
				a = a.WithZone(zone)
			}
		}
		port := s.Port
		if port == 0 {
			port = 53
		}
		if ap := netip.AddrPortFrom(a, port); !slices.Contains(up, ap) {
			up = append(up, ap)
		}
	}
	// Global servers first: resolved's own order.
	for _, global := range []bool{true, false} {
		for _, s := range servers {
			if (s.Ifindex == 0) == global {
				add(s)
			}
		}
	}
	if len(up) == 0 {
		fallback, _ := r.servers("FallbackDNS")
		for _, s := range fallback {
			add(s)
		}
	}
	if len(up) == 0 {
		return []netip.AddrPort{netip.MustParseAddrPort(resolvedStubAddr)}, true, nil
	}
	return up, false, nil
}

// servers reads the property prop+"Ex" (resolved 246 and later), or prop.
func (r *resolvedDNS) servers(prop string) ([]resolvedServer, error) {
	var ex []resolvedServer
	errEx := getProperty(r.obj, resolvedManager, prop+"Ex", &ex)
	if errEx == nil {
		return ex, nil
	}
	var old []struct {
		Ifindex int32
		Family  int32
		Address []byte
	}
	if err := getProperty(r.obj, resolvedManager, prop, &old); err != nil {
		return nil, err
	}
	out := make([]resolvedServer, len(old))
	for i, s := range old {
		out[i] = resolvedServer{Ifindex: s.Ifindex, Family: s.Family, Address: s.Address}
	}
	return out, nil
}

// linkDefaultRoute reports whether resolved sends the names that no
// routing domain claims to the link's servers; when it cannot say (an
// older resolved), it assumes so.
func (r *resolvedDNS) linkDefaultRoute(ifindex int32) bool {
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	var path dbus.ObjectPath
	if err := r.obj.CallWithContext(ctx, resolvedManager+".GetLink", 0, ifindex).Store(&path); err != nil {
		return true
	}
	var dr bool
	if err := getProperty(r.conn.Object(resolvedBusName, path), resolvedLink, "DefaultRoute", &dr); err != nil {
		return true
	}
	return dr
}

// getProperty reads obj's property iface.name into dst, within busTimeout.
func getProperty(obj dbus.BusObject, iface, name string, dst any) error {
	ctx, cancel := context.WithTimeout(context.Background(), busTimeout)
	defer cancel()
	return obj.CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, iface, name).Store(dst)
}
