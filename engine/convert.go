package engine

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/internal/errs"
	"github.com/shunt-dev/shunt/router"
)

// Plan is a configuration converted, once, into what the router and the
// broker take. New and Reload run on one, and shunt check and shunt
// explain read one without starting anything.
type Plan struct {
	Config *config.Config
	// Rules are the filter rules in order; Ruleset is them compiled with
	// the always-direct applications, as the router decides by them.
	Rules      []router.Rule
	Ruleset    *router.Ruleset
	Profiles   []broker.Profile
	ProxyRules []broker.ProxyRule
	// Listeners are the SOCKS and HTTP proxies and the static tunnels.
	Listeners []Listener
}

// Convert converts a loaded (so validated) configuration. config checks
// every value as it reads it, so an error here means config and the
// router or broker disagree about a value: it names each item that did not
// convert, at its file and line.
func Convert(cfg *config.Config) (*Plan, error) {
	rules, rerr := RouterRules(cfg)
	profiles, perr := BrokerProfiles(cfg)
	proxyRules, xerr := BrokerProxyRules(cfg)
	if err := errs.Join(slices.Concat(flat(rerr), flat(perr), flat(xerr))...); err != nil {
		return nil, err
	}
	return &Plan{
		Config:     cfg,
		Rules:      rules,
		Ruleset:    router.Compile(rules, cfg.AlwaysDirectApplications...),
		Profiles:   profiles,
		ProxyRules: proxyRules,
		Listeners:  Listeners(cfg),
	}, nil
}

// needsOwner reports whether flows must be traced to their processes or
// users: the rules look at them, or a static tunnel's profile carries
// only some users' flows.
func (p *Plan) needsOwner() bool {
	if p.Ruleset.NeedsOwner() {
		return true
	}
	for _, l := range p.Listeners {
		if l.Rule != nil && l.Rule.AllowedUsers != nil {
			return true
		}
	}
	return false
}

// Captured is what the plan routes to the TUN device; resolved gives a
// host name's current addresses (nil: none has any).
func (p *Plan) Captured(resolved func(host string) []netip.Addr) []netip.Prefix {
	return p.Ruleset.Captured(resolved)
}

// RouterRules converts the filter rules for the router. A rule whose
// destinations include "any" is for any destination: its other
// destinations are dropped.
func RouterRules(cfg *config.Config) ([]router.Rule, error) {
	out := make([]router.Rule, 0, len(cfg.Rules))
	var errList []error
	for i, r := range cfg.Rules {
		rr := router.Rule{
			Name: r.Name, Profile: r.Profile, Applications: r.Applications,
			HostFromApplication: r.HostFromApplication,
		}
		if r.File != "" {
			rr.Source = fmt.Sprintf("%s:%d", r.File, r.Line)
		}
		var err error
		if rr.Action, err = router.ParseAction(r.Action); err != nil {
			errList = append(errList, &config.Error{File: r.File, Line: r.Line, Msg: fmt.Sprintf("rule #%d: %v", i+1, err)})
		}
		if rr.Action == router.Tunnel {
			if rr.OnTunnelDown, err = router.ParseTunnelDown(r.TunnelDown()); err != nil {
				errList = append(errList, &config.Error{File: r.File, Line: r.Line, Msg: fmt.Sprintf("rule #%d: %v", i+1, err)})
			}
		}
		for _, src := range r.Sources {
			rr.Sources = append(rr.Sources, src.Prefixes...)
		}
		anyDest := false
		for _, d := range r.Destinations {
			anyDest = anyDest || d.Any
			rr.Destinations = append(rr.Destinations, d.Prefixes...)
			if d.Host != "" {
				rr.Hosts = append(rr.Hosts, d.Host)
			}
			if d.Domain != "" {
				rr.Domains = append(rr.Domains, d.Domain)
			}
		}
		if anyDest {
			rr.Destinations, rr.Hosts, rr.Domains = nil, nil, nil
		}
		for _, p := range r.Ports {
			rr.Ports = append(rr.Ports, router.PortRange{Lo: p.Lo, Hi: p.Hi})
		}
		for _, u := range r.Users {
			rr.Users = append(rr.Users, u.UID)
		}
		if p, ok := cfg.Profile(r.Profile); ok && rr.Action == router.Tunnel {
			rr.AllowedUsers = allowedUsers(p)
		}
		out = append(out, rr)
	}
	return out, errs.Join(errList...)
}

// allowedUsers are the uids whose flows may ride on p (router.Rule's
// AllowedUsers): nil for every user, else a list, empty if none.
func allowedUsers(p config.Profile) []uint32 {
	uids, anyUser := p.AllowedUIDs()
	if anyUser {
		return nil
	}
	if uids == nil {
		return []uint32{} // none: never every user by default
	}
	return uids
}

// BrokerProfiles converts the profiles for the broker.
func BrokerProfiles(cfg *config.Config) ([]broker.Profile, error) {
	out := make([]broker.Profile, len(cfg.Profiles))
	var errList []error
	for i, p := range cfg.Profiles {
		fail := func(err error) {
			errList = append(errList, &config.Error{File: p.File, Line: p.Line, Msg: fmt.Sprintf("profile %q: %v", p.Name, err)})
		}
		policy, err := broker.ParseHostKeyPolicy(p.HostKeyPolicy)
		if err != nil {
			fail(err)
		}
		bp := broker.Profile{
			Name:              p.Name,
			Hosts:             p.Host,
			Port:              p.Port,
			User:              p.User,
			AuthMethods:       p.AuthMethods,
			IdentityFiles:     p.IdentityFiles,
			IdentitiesOnly:    p.IdentitiesOnly,
			CertificateFiles:  p.CertificateFiles,
			KnownHosts:        p.KnownHosts,
			HostKeyPolicy:     policy,
			Ciphers:           p.Ciphers,
			KeepaliveInterval: p.KeepaliveInterval.D,
			KeepaliveCount:    p.KeepaliveCount,
			IdleTimeout:       p.IdleTimeout.D,
			Connections:       p.Connections,
			Jump:              p.Jump,
			ConnectOnStart:    p.ConnectOnStart,
		}
		if p.Proxy != "" {
			if bp.Proxy, err = broker.ParseProxy(p.Proxy); err != nil {
				fail(err)
			}
		}
		out[i] = bp
	}
	return out, errs.Join(errList...)
}

// BrokerProxyRules converts the proxy rules for the broker: addresses and
// networks match servers given by address, anything else is a host name
// pattern.
func BrokerProxyRules(cfg *config.Config) ([]broker.ProxyRule, error) {
	out := make([]broker.ProxyRule, len(cfg.ProxyRules))
	var errList []error
	for i, r := range cfg.ProxyRules {
		for _, d := range r.Destinations {
			if p, err := netip.ParsePrefix(d); err == nil {
				out[i].Networks = append(out[i].Networks, p.Masked())
			} else if a, err := netip.ParseAddr(d); err == nil {
				out[i].Networks = append(out[i].Networks, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			} else {
				out[i].Hosts = append(out[i].Hosts, d)
			}
		}
		if r.Proxy != "direct" {
			var err error
			if out[i].Proxy, err = broker.ParseProxy(r.Proxy); err != nil {
				errList = append(errList, &config.Error{File: r.File, Line: r.Line, Msg: fmt.Sprintf("proxy rule #%d: %v", i+1, err)})
			}
		}
	}
	return out, errs.Join(errList...)
}

// flat lists the errors a joined error holds, so that errors from several
// conversions join into one list, one error an item.
func flat(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
