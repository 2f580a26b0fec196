// Package enginetest provides doubles for the engine's dependencies that
// have no real counterpart without root: a Capture that records the
// routes, and a resolver answering from a table. Together with
// tun.NewMemory, netstacktest, routertest, prompttest and platformtest
// (the owner lookup) they run an engine end to end in a test.
package enginetest

import (
	"errors"
	"net/netip"
	"slices"
	"sync"

	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/platform"
)

var (
	_ engine.Capture  = (*Capture)(nil)
	_ engine.Resolver = (*watch)(nil)
)

// Capture records what the engine routes, as the routing table would
// hold it. Its zero value is ready to use.
type Capture struct {
	// UpErr and SetErr, when set, fail Up and SetRoutes.
	UpErr, SetErr error

	mu     sync.Mutex
	device string
	up     bool
	routes []netip.Prefix
	sets   [][]netip.Prefix
	ups    int
	closes int
}

// Up implements engine.Capture.
func (c *Capture) Up(device string, routes []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ups++
	if c.UpErr != nil {
		return c.UpErr
	}
	c.device, c.up = device, true
	c.set(routes)
	return nil
}

// SetRoutes implements engine.Capture.
func (c *Capture) SetRoutes(routes []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.up {
		return errors.New("enginetest: SetRoutes on a capture that is not up")
	}
	if c.SetErr != nil {
		return c.SetErr
	}
	c.set(routes)
	return nil
}

func (c *Capture) set(routes []netip.Prefix) {
	r := slices.Clone(routes)
	slices.SortFunc(r, func(a, b netip.Prefix) int {
		if n := a.Addr().Compare(b.Addr()); n != 0 {
			return n
		}
		return a.Bits() - b.Bits()
	})
	r = slices.Compact(r)
	c.routes = r
	c.sets = append(c.sets, r)
}

// Close implements engine.Capture.
func (c *Capture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes++
	c.up, c.routes = false, nil
	return nil
}

// Device is the device name Up was given.
func (c *Capture) Device() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.device
}

// Routes are the destinations routed now, sorted.
func (c *Capture) Routes() []netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.routes)
}

// Sets are the route sets the capture was given, by Up and then each
// SetRoutes, in order, each sorted.
func (c *Capture) Sets() [][]netip.Prefix {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sets)
}

// Ups counts the calls of Up, Closes those of Close.
func (c *Capture) Ups() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ups
}

// Closes counts the calls of Close.
func (c *Capture) Closes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closes
}

// Resolver answers host names from a table that the test changes, as DNS
// answers change. Resolve is its engine.Deps.Resolve.
type Resolver struct {
	// Err, when set, makes Resolve fail.
	Err error

	mu      sync.Mutex
	table   map[string][]netip.Addr
	watches []*watch
}

// NewResolver answers from table (host → addresses).
func NewResolver(table map[string][]netip.Addr) *Resolver {
	t := map[string][]netip.Addr{}
	for h, a := range table {
		t[h] = slices.Clone(a)
	}
	return &Resolver{table: t}
}

// Resolve starts watching hosts (engine.Deps.Resolve).
func (r *Resolver) Resolve(hosts []string, onChange func()) (engine.Resolver, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Err != nil {
		return nil, r.Err
	}
	w := &watch{r: r, hosts: slices.Clone(hosts), onChange: onChange}
	r.watches = append(r.watches, w)
	return w, nil
}

// Set changes host's answer and tells the open watches of host, as a new
// DNS answer would.
func (r *Resolver) Set(host string, addrs ...netip.Addr) {
	r.mu.Lock()
	r.table[host] = slices.Clone(addrs)
	var tell []func()
	for _, w := range r.watches {
		if !w.closed && slices.Contains(w.hosts, host) && w.onChange != nil {
			tell = append(tell, w.onChange)
		}
	}
	r.mu.Unlock()
	for _, f := range tell {
		f()
	}
}

// Watching are the host lists of the watches open now, oldest first.
func (r *Resolver) Watching() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]string
	for _, w := range r.watches {
		if !w.closed {
			out = append(out, slices.Clone(w.hosts))
		}
	}
	return out
}

// watch is one Resolve's resolver.
type watch struct {
	r        *Resolver
	hosts    []string
	onChange func()
	closed   bool // guarded by r.mu
}

func (w *watch) Addrs(host string) []netip.Addr {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.closed || !slices.Contains(w.hosts, host) {
		return nil
	}
	return slices.Clone(w.r.table[host])
}

func (w *watch) Names(addr netip.Addr) []string {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	var out []string
	for _, h := range w.hosts {
		if !w.closed && slices.Contains(w.r.table[h], addr.Unmap()) {
			out = append(out, h)
		}
	}
	return out
}

func (w *watch) Close() {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.closed = true
}

// OSDNS stands in for the system resolver's configuration (engine.OSDNS):
// it records what the engine sets, and gives the upstreams a test chose.
type OSDNS struct {
	// Up are the upstreams it reports.
	Up []netip.AddrPort

	mu     sync.Mutex
	opts   []platform.DNSOptions
	sets   []platform.DNSConfig
	closes int
}

// Open is an engine.Deps.OSDNS.
func (o *OSDNS) Open(opts platform.DNSOptions) (engine.OSDNS, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.opts = append(o.opts, opts)
	return osdnsHandle{o}, nil
}

// Opened are the options of each Open.
func (o *OSDNS) Opened() []platform.DNSOptions {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.opts)
}

// Sets are the configurations set, in order.
func (o *OSDNS) Sets() []platform.DNSConfig {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.sets)
}

// Closes counts the restores.
func (o *OSDNS) Closes() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closes
}

type osdnsHandle struct{ o *OSDNS }

func (h osdnsHandle) Set(c platform.DNSConfig) error {
	h.o.mu.Lock()
	defer h.o.mu.Unlock()
	h.o.sets = append(h.o.sets, c)
	return nil
}

func (h osdnsHandle) Upstreams() []netip.AddrPort { return slices.Clone(h.o.Up) }
func (h osdnsHandle) Mode() string                { return platform.DNSModeFile }

func (h osdnsHandle) Close() error {
	h.o.mu.Lock()
	defer h.o.mu.Unlock()
	h.o.closes++
	return nil
}
