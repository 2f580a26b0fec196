package engine

import (
	"errors"
	"fmt"
	"slices"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/internal/errs"
)

// ReloadOptions change how Reload treats the flows of the configuration
// it replaces.
type ReloadOptions struct {
	// ResetRemoved resets (RST) the running flows of profiles the new
	// configuration removes or changes, instead of letting them run on
	// their old SSH connections until they end.
	ResetRemoved bool
}

// Reload puts cfg, a loaded configuration, in force, as ReloadWith with
// the default options: flows of removed or changed profiles run on.
func (e *Engine) Reload(cfg *config.Config) error {
	return e.ReloadWith(cfg, ReloadOptions{})
}

// ReloadWith puts cfg, a loaded configuration, in force: the profiles,
// the rules, the always-direct applications and the proxy rules are
// swapped at once, the rules' host names are resolved again, and the
// routes change by difference (a destination captured before and after
// stays routed). Flows already running go on as they were decided; new
// flows follow cfg.
//
// Profiles: a new profile is usable at once; a changed one (any setting,
// or a profile it jumps through) gets new SSH connections for new flows;
// a removed one takes no new flows. The flows running on a removed or
// changed profile's old connections go on until they end, and each old
// connection closes with its last flow, unless opts.ResetRemoved, which
// resets those flows at once. An unchanged profile keeps its connections.
//
// A configuration that does not convert, or that changes what cannot
// change while shunt runs (the TUN device), is refused as a whole, with
// every error at its file and line: the old one stays in force. Log
// settings are read at start only.
func (e *Engine) ReloadWith(cfg *config.Config, opts ReloadOptions) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return errors.New("engine closed")
	}
	old := e.plan.Load()
	plan, err := Convert(cfg)
	if err != nil {
		return err
	}
	if err := fixed(old, plan); err != nil {
		return err
	}
	if err := e.capsAllow(plan); err != nil {
		return err
	}
	if !e.started {
		if err := e.broker.SetProfiles(plan.Profiles, opts.ResetRemoved); err != nil {
			return err
		}
		e.broker.SetProxyRules(plan.ProxyRules)
		e.router.SetRuleset(plan.Ruleset)
		e.reloadMemory(old.Config, cfg)
		e.plan.Store(plan)
		return nil
	}
	if err := e.openOwners(plan); err != nil {
		return err
	}
	res, err := e.deps.Resolve(plan.WatchedHosts(), e.updateRoutes)
	if err != nil {
		return err
	}
	// The profiles first, checked as a whole: the new rules find the
	// profiles they name. Nothing else has changed if they are refused.
	if err := e.broker.SetProfiles(plan.Profiles, opts.ResetRemoved); err != nil {
		res.Close()
		return err
	}
	if cfg.Log.Level != old.Config.Log.Level {
		e.log.WithField("level", cfg.Log.Level).Warn("log.level changes take effect at the next start")
	}
	for _, sh := range plan.Ruleset.Shadowed() {
		e.log.Warn(sh.String())
	}
	e.broker.SetProxyRules(plan.ProxyRules)
	e.router.SetRuleset(plan.Ruleset)
	e.reloadMemory(old.Config, cfg)
	e.plan.Store(plan)
	if replaced := e.names.set(res); replaced != nil {
		replaced.Close()
	}
	e.log.Info("configuration reloaded")
	plan.Log(e.log, res.Addrs)
	dnsErr := e.stopDNSFor(old, plan)
	if err := e.setRoutes(); err != nil {
		return fmt.Errorf("the new rules are in force, but routing their destinations failed: %w", err)
	}
	if err := errs.Join(dnsErr, e.startDNSFor(plan)); err != nil {
		return fmt.Errorf("the new rules are in force, but split DNS did not follow them: %w", err)
	}
	return nil
}

// fixed refuses what cannot change while shunt runs: the TUN device, which
// is made at start. Each change is an error at its file and line.
func fixed(old, plan *Plan) error {
	var errList []error
	at := func(file string, line int, format string, args ...any) {
		errList = append(errList, &config.Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	ot, nt := old.Config.TUN, plan.Config.TUN
	if ot.Name != nt.Name || ot.MTU != nt.MTU {
		at(nt.File, nt.Line, "tun changed (name %s, mtu %d, in force: name %s, mtu %d): the device is made at start; restart shunt to change it", nt.Name, nt.MTU, ot.Name, ot.MTU)
	}
	if ot.TUNEnabled() != nt.TUNEnabled() {
		at(nt.File, nt.Line, "tun.enabled changed to %v: the device is made (or not) at start; restart shunt to change it", nt.TUNEnabled())
	}
	if !sameListeners(old.Listeners, plan.Listeners) {
		file, line := plan.Config.Path, 0
		if len(plan.Listeners) > 0 {
			file, line = plan.Listeners[0].File, plan.Listeners[0].Line
		}
		at(file, line, "socks_listen, http_proxy_listen, allow_from, socks_users or static_tunnels changed: listeners open at start; restart shunt to change them")
	}
	if !slices.EqualFunc(old.Config.SOCKSUsers, plan.Config.SOCKSUsers, func(a, b config.SOCKSUser) bool {
		return a.Name == b.Name && a.PasswordHash == b.PasswordHash && a.PasswordFile == b.PasswordFile
	}) {
		at(plan.Config.Path, 0, "socks_users changed: they are read at start; restart shunt to change them")
	}
	return errs.Join(errList...)
}

// sameListeners reports whether two plans listen alike.
func sameListeners(a, b []Listener) bool {
	return slices.EqualFunc(a, b, func(x, y Listener) bool {
		return x.Kind == y.Kind && x.Addr == y.Addr && slices.Equal(x.AllowFrom, y.AllowFrom) &&
			x.Host == y.Host && x.Port == y.Port && x.Profile == y.Profile
	})
}
