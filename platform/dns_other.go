//go:build !linux && !darwin && !windows

package platform

import (
	"fmt"
	"os"
)

// NewOSDNS supports only DNSModeOff on the systems other than Linux, macOS
// (/etc/resolver/DOMAIN files) and Windows (NRPT rules). Upstreams come
// from resolv.conf where there is one.
func NewOSDNS(opts DNSOptions) (OSDNS, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Mode != DNSModeOff {
		return nil, fmt.Errorf("dns.mode %s is not supported on this operating system yet: set dns.mode: off (nothing changes; point your resolver at shunt's server yourself)", opts.Mode)
	}
	data, err := os.ReadFile(opts.ResolvConf)
	if err != nil {
		// No resolv.conf (Windows): the caller finds the resolvers.
		return &offDNS{}, nil
	}
	return &offDNS{up: parseResolvConf(data).upstreams()}, nil
}

// CleanUpDNS has nothing to clean up on this system: no mode but off.
func CleanUpDNS(opts DNSOptions) error {
	_, err := opts.withDefaults()
	return err
}
