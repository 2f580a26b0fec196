package broker

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// hop is how the broker reaches one server of a profile: through the
// profile's jump profile, through a proxy (the profile's own, or a proxy
// rule's), or directly.
type hop struct {
	jump  string   // the jump profile's name
	proxy *url.URL // nil: direct (or jump)
	rule  int      // the proxy rule that chose, 1-based; 0: none did
}

// hopTo chooses the hop to host, a server of p, as connecting does: the
// jump profile first, then the profile's proxy, then the first proxy rule
// that matches host.
func hopTo(p *Profile, rules []ProxyRule, host string) hop {
	switch {
	case p.Jump != "":
		return hop{jump: p.Jump}
	case p.Proxy != nil:
		return hop{proxy: p.Proxy}
	}
	for i := range rules {
		if rules[i].matches(host) {
			return hop{proxy: rules[i].Proxy, rule: i + 1}
		}
	}
	return hop{}
}

// String says the hop for errors: "direct", "via socks5://proxy:1080",
// "via jump profile bastion", with the proxy rule that chose.
func (h hop) String() string {
	switch {
	case h.jump != "":
		return "via jump profile " + h.jump
	case h.proxy == nil && h.rule > 0:
		return fmt.Sprintf("direct (proxy rule %d)", h.rule)
	case h.proxy == nil:
		return "direct"
	case h.rule > 0:
		return fmt.Sprintf("via %s (proxy rule %d)", h.proxy.Redacted(), h.rule)
	}
	return "via " + h.proxy.Redacted()
}

// Route says in words how the broker reaches the SSH server of the named
// profile, from shunt outwards, as connecting does: which proxy or proxy
// rule carries each leg, and which jump profile's connection carries the
// next, for each host in failover order. With server set, it is the route
// to that server with the profile's settings (a host-from-application
// rule's SSH connection to the destination itself). Nothing is dialled;
// proxy passwords are left out. Examples:
//
//	direct to alice@gw.corp.example:22
//	via socks5://proxy:1080 (proxy rule 2) to alice@gw.corp.example:22
//	direct to bob@bastion.example:22 (profile bastion), then through that connection to alice@10.2.0.9:22
func Route(profiles []Profile, rules []ProxyRule, profile, server string) (string, error) {
	byName := make(map[string]*Profile, len(profiles))
	for i := range profiles {
		p := profiles[i]
		p.applyDefaults()
		byName[p.Name] = &p
	}
	p, ok := byName[profile]
	if !ok {
		return "", fmt.Errorf("no connection profile %q", profile)
	}
	hosts := p.Hosts
	if server != "" {
		hosts = []string{server}
	}
	return describeRoute(byName, rules, p, hosts, []string{profile})
}

// describeRoute describes the legs to p's hosts; chain is the profiles
// jumped through so far, to refuse loops.
func describeRoute(byName map[string]*Profile, rules []ProxyRule, p *Profile, hosts []string, chain []string) (string, error) {
	if len(hosts) == 0 {
		return "", fmt.Errorf("profile %q has no host", p.Name)
	}
	var legs []string
	for _, host := range hosts {
		target := net.JoinHostPort(host, strconv.Itoa(p.Port))
		if p.User != "" {
			target = p.User + "@" + target
		}
		h := hopTo(p, rules, host)
		switch {
		case h.jump != "":
			j, ok := byName[h.jump]
			if !ok {
				return "", fmt.Errorf("profile %q jumps through unknown profile %q", p.Name, h.jump)
			}
			if i := slices.Index(chain, h.jump); i >= 0 {
				return "", fmt.Errorf("profiles jump in a loop: %s", strings.Join(slices.Concat(chain[i:], []string{h.jump}), " → "))
			}
			via, err := describeRoute(byName, rules, j, j.Hosts, slices.Concat(chain, []string{h.jump}))
			if err != nil {
				return "", err
			}
			legs = append(legs, fmt.Sprintf("%s (profile %s), then through that connection to %s", via, j.Name, target))
		case h.proxy == nil:
			leg := "direct to " + target
			if h.rule > 0 {
				leg += fmt.Sprintf(" (proxy rule %d)", h.rule)
			}
			legs = append(legs, leg)
		default:
			leg := "via " + h.proxy.Redacted()
			if h.rule > 0 {
				leg += fmt.Sprintf(" (proxy rule %d)", h.rule)
			} else {
				leg += fmt.Sprintf(" (profile %s's proxy)", p.Name)
			}
			legs = append(legs, leg+" to "+target)
		}
	}
	return strings.Join(legs, "; if that fails, "), nil
}
