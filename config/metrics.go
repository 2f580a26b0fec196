package config

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Metrics configures the Prometheus endpoint; off unless Listen is set.
type Metrics struct {
	// Listen is the host:port to serve GET /metrics on, e.g.
	// 127.0.0.1:9559. The endpoint has no authentication: an address
	// beyond the loopback exposes the metrics to whoever reaches it, so
	// shunt serves one only because it is written here.
	Listen string `yaml:"listen"`

	Line int    `yaml:"-"`
	File string `yaml:"-"`
}

// UnmarshalYAML records the line of the section.
func (m *Metrics) UnmarshalYAML(n *yaml.Node) error {
	type plain Metrics
	m.Line = n.Line
	return n.Decode((*plain)(m))
}

// validateMetrics checks metrics.listen: a host (an address, a host
// name, or none for every interface) and a port.
func (c *Config) validateMetrics(errorAt func(string, int, string, ...any)) {
	m := &c.Metrics
	if m.Listen == "" {
		return
	}
	const fix = "write host:port, e.g. 127.0.0.1:9559 (or [::1]:9559)"
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		errorAt(m.File, m.Line, "metrics.listen %q is not host:port: %s", m.Listen, fix)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		errorAt(m.File, m.Line, "metrics.listen %q: port %q is not a port from 1 to 65535: %s", m.Listen, port, fix)
	}
	if _, err := netip.ParseAddr(host); host != "" && err != nil && !validHostName(strings.ToLower(host)) {
		errorAt(m.File, m.Line, "metrics.listen %q: %q is not an IP address or host name: %s", m.Listen, host, fix)
	}
}
