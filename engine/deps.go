package engine

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/resolver"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

// Deps are what the engine runs on. A nil field means the operating
// system's implementation; tests pass doubles (engine/enginetest,
// router/routertest, broker/prompt/prompttest, tun.NewMemory).
//
// The engine takes over Device and Capture in New: it closes them in Close,
// and in New or Start when they fail.
type Deps struct {
	// Device is the TUN device, open already. Nil: Start opens the
	// configured one (tun.Open), after the OS capture's clean-up.
	Device tun.Device
	// Capture routes the captured destinations to the device. Nil: the
	// OS's routes (platform.Prepare and platform.OpenCapture).
	Capture Capture
	// Owners opens the lookup of the process and user behind each flow.
	// It is called in Start, and in Reload, only while the rules name
	// applications or users, and closed in Close. Nil: platform.NewOwners;
	// tests pass platformtest.Owners' Open.
	Owners func(logrus.FieldLogger) (platform.Owners, error)
	// Prompter asks for passphrases, passwords and host keys. Nil: the
	// terminal or SSH_ASKPASS, as ssh(1) chooses from the environment
	// (prompt.FromEnv), and where there is neither, a prompt.Queue whose
	// prompts Status lists and Answer answers. A *prompt.Queue given here
	// is used so too (its Events set to the engine's bus, if unset).
	Prompter broker.Prompter
	// Load reads the configuration again, from the files it was read
	// from at start, for Backend.Reload (the control socket's reload).
	// Nil: the engine cannot reload by itself.
	Load func() (*config.Config, error)
	// Dialer makes the connections that must not be captured: to SSH
	// servers and proxies, and the direct flows. Nil: the OS's bypass of
	// the capture (platform.NewBypass: SO_MARK platform.DefaultMark on
	// Linux, the primary interface elsewhere), whose look-ups ask the
	// resolvers the system had before shunt.
	Dialer Dialer
	// Resolve starts watching the rules' host names: it returns once each
	// has been asked once, and calls onChange whenever an answer changes.
	// Nil: the system's name servers, asked through the bypass dialer
	// (resolver.New); with split DNS, the ones it had before shunt.
	Resolve func(hosts []string, onChange func()) (Resolver, error)
	// OSDNS opens the configuration of the system's resolver, for split
	// DNS: Start calls it when the configuration serves DNS, and the
	// engine calls Set once its DNS server answers, and Close as it stops.
	// Nil: when the capture is the OS's, platform.NewOSDNS (Start has
	// put back what a crashed run left, platform.CleanUpDNS, whether or
	// not DNS is served); with any other capture (a test's), one that
	// changes nothing and knows no upstreams, so that no test touches the
	// machine's resolver.
	OSDNS func(platform.DNSOptions) (OSDNS, error)
	// Locals tells this host's addresses from other hosts' (router.Locals):
	// a flow from another host's address was routed through this one (a
	// LAN gateway), and only rules with sources: match it. Nil: with the
	// OS's capture, the addresses of this host's interfaces, read at
	// start and again on each network change; with any other capture (a
	// test's), every flow is this host's own.
	Locals router.Locals
	// Getenv reads the environment: SSH_AUTH_SOCK (the agent), and for
	// the default Prompter SSH_ASKPASS and friends. Nil: os.Getenv.
	Getenv func(string) string
	// Log receives everything the engine and its parts log. Nil: a new
	// logrus logger on stderr.
	Log logrus.FieldLogger
}

// Capture points the captured destinations at the TUN device, and keeps
// shunt's own connections out of the capture.
type Capture interface {
	// Up captures routes to device, which is open and named so by then.
	Up(device string, routes []netip.Prefix) error
	// SetRoutes makes the captured destinations exactly routes. Only the
	// difference changes: a destination captured before and after is
	// never unrouted, not even for a moment.
	SetRoutes(routes []netip.Prefix) error
	// Close removes what Up installed. The engine calls it once, also
	// when Up was never called or failed.
	Close() error
}

// Dialer opens connections that bypass the capture (the router's direct
// dialer and the broker's way to SSH servers).
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// ownerLookup finds the process and user behind a flow, as the router
// asks (router.Owners), until Close.
type ownerLookup interface {
	router.Owners
	Close() error
}

// Resolver keeps the addresses of the rules' host names.
type Resolver interface {
	// Addrs are host's addresses, from its last answer.
	Addrs(host string) []netip.Addr
	// Names are the watched host names that resolve to addr.
	Names(addr netip.Addr) []string
	// Close stops watching.
	Close()
}

// withDefaults fills the nil fields with the operating system's
// implementations; osc is set when the capture is the OS's, whose
// clean-up of a crashed run must come before the device is created.
// bypass is the OS's bypass of the capture, which the caller closes.
//
// Without a TUN (capture false) nothing is captured, so the bypass is a
// plain dialer: marking sockets would need root for nothing.
func (d Deps) withDefaults(up *upstreams, capture bool) (_ Deps, osc *osCapture, bypass *platform.Bypass, err error) {
	if d.Log == nil {
		d.Log = logrus.New()
	}
	if d.Getenv == nil {
		d.Getenv = os.Getenv
	}
	// The host names of rules, the SSH servers' and the exemptions of
	// the kill switch are looked up outside the capture whatever the
	// dialer is.
	bo := platform.BypassOptions{Mark: platform.DefaultMark, Servers: up.get, Log: d.Log}
	if !capture {
		bo = platform.BypassOptions{Servers: up.get, Log: d.Log, Plain: true}
	}
	bypass, err = platform.NewBypass(bo)
	if err != nil {
		return d, nil, nil, err
	}
	if d.Dialer == nil {
		d.Dialer = bypass
	}
	if d.Prompter == nil {
		// FromEnv's nil (no terminal, no askpass) must stay a nil
		// interface: nobody can be asked.
		if p := prompt.FromEnv(d.Getenv, prompt.HasTTY()); p != nil {
			d.Prompter = p
		}
	}
	if d.Owners == nil {
		d.Owners = platform.NewOwners
	}
	if d.Resolve == nil {
		log := d.Log
		d.Resolve = func(hosts []string, onChange func()) (Resolver, error) {
			var servers []string
			for _, s := range up.get() {
				servers = append(servers, s.String())
			}
			r, err := resolver.New(hosts, resolver.Options{Servers: servers, Dialer: bypass.NetDialer(), Log: log, OnChange: onChange})
			if err != nil {
				return nil, err
			}
			r.Start()
			return r, nil
		}
	}
	if d.Capture == nil {
		osc = &osCapture{log: d.Log, exempt: exemptions{lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return bypass.Resolver().LookupNetIP(ctx, "ip", host)
		}, log: d.Log}}
		d.Capture = osc
		if d.Locals == nil {
			d.Locals = newLocalAddrs(d.Log)
		}
	}
	if d.OSDNS == nil {
		if osc != nil {
			d.OSDNS = func(o platform.DNSOptions) (OSDNS, error) { return platform.NewOSDNS(o) }
		} else {
			d.OSDNS = func(platform.DNSOptions) (OSDNS, error) { return untouchedDNS{}, nil }
		}
	}
	return d, osc, bypass, nil
}

// platformOwners gives the router platform's owner lookup, whose owners
// it converts. An owner without a uid (Windows) stays so: rules naming
// users do not match it, and allowed_users refuses its flows.
type platformOwners struct{ platform.Owners }

func (a platformOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (router.Owner, error) {
	o, err := a.Owners.Lookup(ctx, src, dst)
	if err != nil {
		return router.Owner{}, err
	}
	return router.Owner{UID: o.UID, Exe: o.Exe, Name: o.Name, NoUID: o.NoUID}, nil
}

// osCapture is the operating system's capture (platform.OpenCapture).
type osCapture struct {
	log logrus.FieldLogger
	// plan is the plan in force (the engine's), for kill_switch and the
	// servers it exempts; nil: no kill switch.
	plan   func() *Plan
	exempt exemptions
	// open and prepare are the OS's (platform.OpenCapture and
	// platform.Prepare) unless a test sets them.
	open    func(platform.Config, logrus.FieldLogger) (platform.Capture, error)
	prepare func(platform.Config, logrus.FieldLogger) error

	mu      sync.Mutex
	network platform.Capture
}

// killSwitch is whether the plan in force asks for the kill switch, and
// the addresses it leaves reachable.
func (c *osCapture) killSwitch() (bool, []netip.Addr) {
	if c.plan == nil {
		return false, nil
	}
	p := c.plan()
	if p == nil || !p.Config.KillSwitch {
		return false, nil
	}
	return true, c.exempt.get(p)
}

// serverConnected is told each address the broker connected to for host:
// with the kill switch on, an address not exempt yet becomes exempt at
// once.
func (c *osCapture) serverConnected(host string, a netip.Addr) {
	if c.plan == nil {
		return
	}
	p := c.plan()
	if p == nil || !p.Config.KillSwitch || !c.exempt.connected(p, host, a) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.network == nil {
		return // Up exempts it
	}
	on, exempt := c.killSwitch()
	log := c.log.WithFields(logrus.Fields{"host": host, "address": a.Unmap().String()})
	if err := c.network.SetKillSwitch(on, exempt); err != nil {
		log.WithError(err).Warn("kill switch: exempting the SSH server's new address failed")
		return
	}
	log.Info("kill switch: the SSH server's address changed; the new one is exempt too")
}

// prepare runs before the device is created: it refuses a device name in
// use (another shunt) and removes what a crashed run left behind; a kill
// switch left in place stays, if this run has one too, until Up replaces
// it.
func (c *osCapture) prepareDevice(device string) error {
	cfg := platform.DefaultConfig(device, nil)
	cfg.KillSwitch = c.plan != nil && c.plan() != nil && c.plan().Config.KillSwitch
	if c.prepare == nil {
		return platform.Prepare(cfg, c.log)
	}
	return c.prepare(cfg, c.log)
}

func (c *osCapture) Up(device string, routes []netip.Prefix) error {
	cfg := platform.DefaultConfig(device, routes)
	cfg.KillSwitch, cfg.Exempt = c.killSwitch()
	if c.plan != nil && c.plan() != nil {
		cfg.MTU = c.plan().Config.TUN.MTU
	}
	open := c.open
	if open == nil {
		open = platform.OpenCapture
	}
	n, err := open(cfg, c.log)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.network = n
	c.mu.Unlock()
	return nil
}

func (c *osCapture) SetRoutes(routes []netip.Prefix) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.network == nil {
		return fmt.Errorf("capture is not up")
	}
	// A reload may turn the kill switch on or off, or change the
	// servers; the new routes come first, so the kill switch covers
	// them.
	if err := c.network.SetRoutes(routes); err != nil {
		return err
	}
	on, exempt := c.killSwitch()
	return c.network.SetKillSwitch(on, exempt)
}

func (c *osCapture) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.network == nil {
		return nil
	}
	err := c.network.Close()
	c.network = nil
	return err
}

// The pieces fit: the router handles the stack's flows, the broker opens
// the router's tunnels, and the engine's adapters stand in for the
// owner lookup and the names while Reload swaps them.
var (
	_ router.Tunnels = (*broker.Broker)(nil)
	_ router.Owners  = (*owners)(nil)
	_ router.Names   = (*names)(nil)
	_ Capture        = (*osCapture)(nil)
	_ Resolver       = (*resolver.Resolver)(nil)
	_ ownerLookup    = platformOwners{}
)

// untouchedDNS is the resolver configuration of an engine on a test's
// capture: it changes nothing.
type untouchedDNS struct{}

func (untouchedDNS) Set(platform.DNSConfig) error { return nil }
func (untouchedDNS) Upstreams() []netip.AddrPort  { return nil }
func (untouchedDNS) Mode() string                 { return platform.DNSModeOff }
func (untouchedDNS) Close() error                 { return nil }
