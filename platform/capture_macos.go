package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	shunterrs "github.com/shunt-dev/shunt/internal/errs"
)

// macOS capture, by route(8) and ifconfig(8) run as commands, the way
// wg-quick's darwin script and Tailscale's userspace BSD router do it:
//
//	ifconfig utunN inet 169.254.83.1 169.254.83.1 netmask 255.255.255.255
//	ifconfig utunN inet6 fd53:6875:6e74::1 prefixlen 128
//	ifconfig utunN up
//	route -n add -inet 10.0.0.0/8 -interface utunN
//	route -n add -inet6 2001:db8::/32 -interface utunN
//
// The alternative, the routing socket (golang.org/x/net/route), builds
// only on the BSDs, so the messages shunt would build could not be tested
// here; the commands are text, recorded and checked in tests on any
// system, and their failures come with route(8)'s own reason. A route
// or address change is rare (start, reload, a host name's new address),
// so a process per change costs nothing that matters.
//
// route(8) runs without -q: -q silences its report of a failure too, and
// the error would lose the kernel's reason ("File exists").
//
// A captured default (0.0.0.0/0, ::/0) is split into its halves
// (0.0.0.0/1 and 128.0.0.0/1, ::/1 and 8000::/1), which win over the
// default by being longer: the real default route stays, so the bypass
// still finds the primary interface by it, and nothing is lost when shunt
// goes.
//
// macOS has no policy routing that would let marked sockets skip these
// routes; the bypass binds its sockets to the primary interface instead
// (IP_BOUND_IF), and a socket bound so ignores the routes to the utun.
//
// What a crashed run leaves: nothing. The utun disappears with the
// process that opened it, and the kernel removes its addresses and every
// route through it with it. So Prepare only refuses a device in use, and
// CleanUp has nothing to remove.

// runner runs a command, as exec.Command(args[0], args[1:]...), and
// returns what it wrote to stdout and stderr together. Tests record the
// commands instead.
type runner interface {
	run(args ...string) ([]byte, error)
}

// errKillSwitchMacOS is the answer to a kill switch on macOS.
var errKillSwitchMacOS = errors.New("the kill switch (kill_switch: true) is not supported on macOS yet: remove it from the configuration; while shunt runs the captured destinations go through it regardless")

// utunCapture is macOS's capture: the utun's addresses and the routes to it.
type utunCapture struct {
	run   runner
	dev   string
	log   logrus.FieldLogger
	have6 bool

	mu sync.Mutex
	// routes are the routes installed, after the split of defaults.
	routes map[netip.Prefix]bool
	closed bool
}

// utunName is a utun device with its unit: the name macOS gave it.
var utunName = regexp.MustCompile(`^utun[0-9]+$`)

// prepareUTUN refuses a device name in use: with a unit (utunN), exists
// says whether an interface of that name is there already. Without one
// macOS picks a free unit, and there is nothing to check. There is no
// leftover to remove (see above).
func prepareUTUN(cfg Config, exists func(name string) bool) error {
	if cfg.KillSwitch {
		return errKillSwitchMacOS
	}
	if utunName.MatchString(cfg.Device) && exists(cfg.Device) {
		return fmt.Errorf("network device %s exists already: is another shunt (or another VPN) using it? Stop it, or set tun.name to utun and let macOS pick a free one", cfg.Device)
	}
	return nil
}

// openUTUNCapture gives the utun cfg.Device its addresses, brings it up
// and routes cfg.Routes to it. On error it removes the routes it added.
func openUTUNCapture(cfg Config, r runner, log logrus.FieldLogger) (_ *utunCapture, err error) {
	if cfg.KillSwitch {
		return nil, errKillSwitchMacOS
	}
	if !utunName.MatchString(cfg.Device) {
		return nil, fmt.Errorf("capture device %q is not a utun device (utunN): macOS routes only to the device tun.Open created", cfg.Device)
	}
	c := &utunCapture{run: r, dev: cfg.Device, log: log, routes: map[netip.Prefix]bool{}}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, p := range TUNAddrs() {
		a := p.Addr().String()
		if p.Addr().Is4() {
			// Point to point, to itself: a utun has no link, and a
			// single address adds no connected route.
			if err := c.cmd("ifconfig", c.dev, "inet", a, a, "netmask", ipv4Mask(p.Bits())); err != nil {
				return nil, fmt.Errorf("address %v on %s: %w", p, c.dev, err)
			}
			continue
		}
		if err := c.cmd("ifconfig", c.dev, "inet6", a, "prefixlen", fmt.Sprint(p.Bits())); err != nil {
			log.WithError(err).Warn("IPv6 is unavailable on the utun device; IPv6 destinations are not captured")
			continue
		}
		c.have6 = true
	}
	if err := c.cmd("ifconfig", c.dev, "up"); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", c.dev, err)
	}
	if err := c.SetRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	return c, nil
}

// ipv4Mask writes the IPv4 netmask of a prefix length, dotted.
func ipv4Mask(bits int) string {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", byte(m>>24), byte(m>>16), byte(m>>8), byte(m))
}

// cmd runs args, and on failure says which command failed and what it
// wrote.
func (c *utunCapture) cmd(args ...string) error {
	out, err := c.run.run(args...)
	return cmdError(args, out, err)
}

// cmdError is nil without err, or says which command failed and what it
// wrote.
func cmdError(args []string, out []byte, err error) error {
	if err == nil {
		return nil
	}
	if msg := strings.TrimSpace(string(out)); msg != "" {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return fmt.Errorf("%s: %w", strings.Join(args, " "), err)
}

// splitDefault returns the routes the system gets for p: a default route
// becomes its two halves, which take precedence over the real default
// without replacing it.
func splitDefault(p netip.Prefix) []netip.Prefix {
	p = p.Masked()
	if p.Bits() != 0 {
		return []netip.Prefix{p}
	}
	if p.Addr().Is4() {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/1"), netip.MustParsePrefix("128.0.0.0/1")}
	}
	return []netip.Prefix{netip.MustParsePrefix("::/1"), netip.MustParsePrefix("8000::/1")}
}

// routeArgs is route(8)'s command for verb (add, delete) on p.
func (c *utunCapture) routeArgs(verb string, p netip.Prefix) []string {
	fam := "-inet"
	if p.Addr().Is6() {
		fam = "-inet6"
	}
	return []string{"route", "-n", verb, fam, p.String(), "-interface", c.dev}
}

// SetRoutes makes the routes to the utun exactly routes (defaults split):
// it adds what is new first, then deletes what is gone, so a destination
// kept is never unrouted. Without IPv6 on the device, IPv6 routes are
// left out.
func (c *utunCapture) SetRoutes(routes []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("capture is closed")
	}
	want := map[netip.Prefix]bool{}
	for _, p := range routes {
		if !p.IsValid() || p.Addr().Is6() && !c.have6 {
			continue
		}
		for _, q := range splitDefault(p) {
			want[q] = true
		}
	}
	for _, p := range sortedPrefixes(want) {
		if c.routes[p] {
			continue
		}
		if err := c.cmd(c.routeArgs("add", p)...); err != nil {
			return fmt.Errorf("route %v to %s: %w", p, c.dev, err)
		}
		c.routes[p] = true
	}
	for _, p := range sortedPrefixes(c.routes) {
		if want[p] {
			continue
		}
		if err := c.deleteRoute(p); err != nil {
			return err
		}
	}
	return nil
}

// deleteRoute deletes p's route to the utun; one the system has no more
// counts as deleted: "not in table", or route(8) no longer knows the
// device ("bad address: utunN"), which took its routes with it.
func (c *utunCapture) deleteRoute(p netip.Prefix) error {
	args := c.routeArgs("delete", p)
	out, err := c.run.run(args...)
	if err != nil && !strings.Contains(string(out), "not in table") && !strings.Contains(string(out), "bad address: "+c.dev) {
		return fmt.Errorf("remove route %v: %w", p, cmdError(args, out, err))
	}
	delete(c.routes, p)
	return nil
}

// SetKillSwitch: there is no kill switch on macOS yet.
func (c *utunCapture) SetKillSwitch(on bool, _ []netip.Addr) error {
	if on {
		return errKillSwitchMacOS
	}
	return nil
}

// Close deletes the routes. The addresses go with the device, when its
// file is closed. Closing again does nothing.
func (c *utunCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for _, p := range sortedPrefixes(c.routes) {
		if err := c.deleteRoute(p); err != nil {
			errs = append(errs, err)
		}
	}
	return shunterrs.Join(errs...)
}

// sortedPrefixes returns the keys of set, IPv4 first, in address order.
func sortedPrefixes(set map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

var _ Capture = (*utunCapture)(nil)
