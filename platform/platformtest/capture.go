// Package platformtest provides doubles of platform's interfaces for
// tests that must not change the machine: a capture that records what it
// was asked, as text a test compares with what it expects (as Tailscale's
// router tests compare the ip(8) commands they record), an owner lookup
// answering from a table of flows (Owners), and a system resolver's
// configuration that records what it is set to (DNS).
package platformtest

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/platform"
)

var _ platform.Capture = (*Capture)(nil)

// Captures opens Captures and records every call on them, in order, one
// line each:
//
//	open shunt0 routes 10.0.0.0/8 kill-switch off
//	routes 10.0.0.0/8 192.168.1.0/24
//	kill-switch on exempt 192.0.2.1
//	close
//
// Routes and addresses are sorted, so a line does not depend on the
// order of a map. Its zero value is ready to use; Open fits where
// platform.OpenCapture does.
type Captures struct {
	// OpenErr, when set, fails Open (after recording it).
	OpenErr error

	mu    sync.Mutex
	calls []string
	open  *Capture
}

// Open records cfg and returns a Capture recording into c.
func (c *Captures) Open(cfg platform.Config, _ logrus.FieldLogger) (platform.Capture, error) {
	c.record(fmt.Sprintf("open %s routes %s kill-switch %s", cfg.Device, prefixes(cfg.Routes), killSwitch(cfg.KillSwitch, cfg.Exempt)))
	if c.OpenErr != nil {
		return nil, c.OpenErr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = &Capture{c: c, routes: slices.Clone(cfg.Routes)}
	return c.open, nil
}

// Calls are the calls recorded so far.
func (c *Captures) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// Routes are the destinations the capture opened last routes now; nil if
// it is closed or none was opened.
func (c *Captures) Routes() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open == nil || c.open.closed {
		return nil
	}
	return slices.Clone(c.open.routes)
}

func (c *Captures) record(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, line)
}

// Capture is one opened capture; its calls go to its Captures.
type Capture struct {
	c      *Captures
	routes []netip.Prefix // guarded by c.mu
	closed bool           // guarded by c.mu
}

// SetRoutes records routes.
func (p *Capture) SetRoutes(routes []netip.Prefix) error {
	p.c.record("routes " + prefixes(routes))
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.closed {
		return fmt.Errorf("platformtest: SetRoutes on a closed capture")
	}
	p.routes = slices.Clone(routes)
	return nil
}

// SetKillSwitch records the kill switch's state.
func (p *Capture) SetKillSwitch(on bool, exempt []netip.Addr) error {
	p.c.record("kill-switch " + killSwitch(on, exempt))
	return nil
}

// Close records the close; a second one is an error, as the engine must
// close a capture once.
func (p *Capture) Close() error {
	p.c.record("close")
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.closed {
		return fmt.Errorf("platformtest: capture closed twice")
	}
	p.closed = true
	return nil
}

func prefixes(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func killSwitch(on bool, exempt []netip.Addr) string {
	if !on {
		return "off"
	}
	if len(exempt) == 0 {
		return "on"
	}
	s := make([]string, len(exempt))
	for i, a := range exempt {
		s[i] = a.String()
	}
	slices.Sort(s)
	return "on exempt " + strings.Join(s, " ")
}
