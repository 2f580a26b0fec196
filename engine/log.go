package engine

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/router"
)

// Log logs what the plan captures and each rule as it is matched: its
// destinations (a rule that names only host names that do not resolve yet
// matches nothing; "any" is said, never implied), ports, applications,
// users, and for tunnel rules the way to the SSH server. resolved gives a
// host name's current addresses (nil: none has any).
func (p *Plan) Log(log logrus.FieldLogger, resolved func(host string) []netip.Addr) {
	cfg, rules := p.Config, p.Rules
	if cfg.TUN.TUNEnabled() {
		log.Infof("capturing %s via %s", list(p.Captured(resolved)), cfg.TUN.Name)
	} else {
		log.Info("capturing nothing (tun.enabled: false): the rules decide the listeners' flows")
	}
	for i := range rules {
		r := &rules[i]
		f := logrus.Fields{"rule": r.Label(i), "action": r.Action.String()}
		if r.Source != "" {
			f["source"] = r.Source
		}
		if r.AnyDestination() {
			f["destinations"] = "any"
		}
		if len(r.Destinations) > 0 {
			f["destinations"] = list(r.Destinations)
		}
		if len(r.Hosts) > 0 {
			hosts := make([]string, len(r.Hosts))
			for j, h := range r.Hosts {
				var addrs []netip.Addr
				if resolved != nil {
					addrs = resolved(h)
				}
				if len(addrs) == 0 {
					hosts[j] = h + " (does not resolve yet: matches nothing until it does)"
				} else {
					hosts[j] = h + " (" + list(addrs) + ")"
				}
			}
			f["hosts"] = strings.Join(hosts, ", ")
		}
		if len(r.Domains) > 0 {
			f["domains"] = strings.Join(r.Domains, ", ")
		}
		if len(r.Ports) > 0 {
			f["ports"] = list(r.Ports)
		}
		if len(r.Applications) > 0 {
			f["applications"] = strings.Join(r.Applications, ", ")
		}
		if len(r.Users) > 0 {
			users := make([]string, len(r.Users))
			for j, uid := range r.Users {
				users[j] = fmt.Sprint(uid)
				// The name, as written, beside the uid it stands for.
				if i < len(cfg.Rules) && j < len(cfg.Rules[i].Users) {
					if raw := cfg.Rules[i].Users[j].Raw; raw != users[j] {
						users[j] = fmt.Sprintf("%s (uid %d)", raw, uid)
					}
				}
			}
			f["users"] = strings.Join(users, ", ")
		}
		if r.Action == router.Tunnel {
			if r.HostFromApplication {
				f["via"] = r.Profile + ": SSH to each destination itself"
			} else if route, err := broker.Route(p.Profiles, p.ProxyRules, r.Profile, ""); err != nil {
				f["via"] = r.Profile + ": " + err.Error()
			} else {
				f["via"] = r.Profile + ": " + route
			}
		}
		log.WithFields(f).Info("rule")
	}
	log.Info("everything else is left alone; captured flows that no rule matches go direct")
}

// list is "a, b, c", or "nothing".
func list[T fmt.Stringer](ps []T) string {
	if len(ps) == 0 {
		return "nothing"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
