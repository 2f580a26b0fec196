package config

import (
	"net/netip"

	"go.yaml.in/yaml/v3"
)

// Console configures the web console's TCP listener; off unless Listen
// is set. The console is also served on the control socket, at
// /console/, whatever this says.
type Console struct {
	// Listen is ADDRESS:PORT, e.g. 127.0.0.1:9560.
	Listen string `yaml:"listen"`
	// AllowFrom are the networks whose hosts may use the console besides
	// this host's loopback (required for an address other than
	// loopback).
	AllowFrom []string `yaml:"allow_from"`

	// Addr and Allow are Listen and AllowFrom parsed (validate).
	Addr  netip.AddrPort `yaml:"-"`
	Allow []netip.Prefix `yaml:"-"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the line of the section.
func (c *Console) UnmarshalYAML(n *yaml.Node) error {
	type plain Console
	c.Line = n.Line
	return n.Decode((*plain)(c))
}

// validateConsole checks console.listen and console.allow_from, as the
// proxies' listen addresses are checked.
func (c *Config) validateConsole(errorAt func(string, int, string, ...any)) {
	k := &c.Console
	k.Addr, k.Allow = netip.AddrPort{}, nil
	allow, ok := parseAllowFrom(k.AllowFrom)
	if !ok {
		errorAt(k.File, k.Line, "console.allow_from %v: write networks or addresses, e.g. [192.168.50.0/24, 10.0.0.7]", k.AllowFrom)
	}
	if k.Listen == "" {
		if len(k.AllowFrom) > 0 {
			errorAt(k.File, k.Line, "console.allow_from without console.listen: add listen: 127.0.0.1:9560, or remove allow_from")
		}
		return
	}
	ap, err := parseListen(k.Listen)
	if err != nil {
		errorAt(k.File, k.Line, "console.listen %q: %v", k.Listen, err)
		return
	}
	if !ap.Addr().IsLoopback() && len(allow) == 0 && ok {
		errorAt(k.File, k.Line, "console.listen %s is not a loopback address: add console.allow_from: with the networks whose hosts may use the console (e.g. [192.168.50.0/24]), so that it is not open to everyone", ap)
		return
	}
	for _, l := range c.listeners {
		if l.Addr == ap {
			errorAt(k.File, k.Line, "console.listen %s: %s listens there already: use another port", ap, l.Name())
		}
	}
	if c.Metrics.Listen != "" {
		if m, err := parseListen(c.Metrics.Listen); err == nil && m == ap {
			errorAt(k.File, k.Line, "console.listen %s: metrics.listen is there already: use another port (9560 is the console's usual one)", ap)
		}
	}
	k.Addr, k.Allow = ap, allow
}
