package platformtest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/shunt-dev/shunt/platform"
)

var _ platform.OSDNS = (*DNS)(nil)

// DNS is a system resolver's configuration that records what it is asked,
// one line a call:
//
//	set nameservers 169.254.83.53 fd53:6875:6e74::53 domains corp.example device utun4
//	close
//
// Its zero value is ready to use and says DNSModeFile; the fields set
// before use choose otherwise.
type DNS struct {
	// ModeName is what Mode returns; "" means platform.DNSModeFile.
	ModeName string
	// Up are the upstreams Upstreams returns.
	Up []netip.AddrPort
	// SetErr, when set, fails Set (after recording it).
	SetErr error

	mu    sync.Mutex
	calls []string
	cur   *platform.DNSConfig
}

// Set records cfg and keeps it as the configuration in force.
func (d *DNS) Set(cfg platform.DNSConfig) error {
	ns := make([]string, len(cfg.Nameservers))
	for i, a := range cfg.Nameservers {
		ns[i] = a.String()
	}
	domains := "all"
	if len(cfg.Domains) > 0 {
		domains = strings.Join(cfg.Domains, " ")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, fmt.Sprintf("set nameservers %s domains %s device %s", strings.Join(ns, " "), domains, cfg.Device))
	if d.SetErr != nil {
		return d.SetErr
	}
	c := cfg
	c.Nameservers, c.Domains = slices.Clone(cfg.Nameservers), slices.Clone(cfg.Domains)
	d.cur = &c
	return nil
}

// Upstreams returns a copy of Up.
func (d *DNS) Upstreams() []netip.AddrPort { return slices.Clone(d.Up) }

// Mode returns ModeName, or platform.DNSModeFile.
func (d *DNS) Mode() string {
	if d.ModeName == "" {
		return platform.DNSModeFile
	}
	return d.ModeName
}

// Close records the close and drops the configuration in force, as the
// system's is restored.
func (d *DNS) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, "close")
	d.cur = nil
	return nil
}

// Calls are the calls recorded so far.
func (d *DNS) Calls() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Current is the configuration in force, nil before a Set and after
// Close.
func (d *DNS) Current() *platform.DNSConfig {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil {
		return nil
	}
	c := *d.cur
	return &c
}
