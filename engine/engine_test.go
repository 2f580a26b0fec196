package engine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/broker/prompt/prompttest"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/engine/enginetest"
	"github.com/shunt-dev/shunt/netstack/netstacktest"
	"github.com/shunt-dev/shunt/platform"
	"github.com/shunt-dev/shunt/platform/platformtest"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/router/routertest"
	"github.com/shunt-dev/shunt/tun"
)

const mtu = 1500

// worldPassword is the SSH server's password.
const worldPassword = "open sesame"

// world is an engine's surroundings, all in this process: an application
// host on an in-memory TUN, an SSH server (brokertest) whose forwarded
// channels reach an echo listener, a capture that records the routes, a
// dialer for direct flows and SSH connections, a resolver, an owner
// lookup and a prompter nobody answers.
type world struct {
	t        *testing.T
	srv      *brokertest.Server
	dir      string
	dev      *tun.Memory
	app      *netstacktest.AppHost
	capture  *enginetest.Capture
	dialer   *routertest.Dialer
	resolver *enginetest.Resolver
	owners   *platformtest.Owners
	prompter *prompttest.Prompter
	log      *logrus.Logger

	mu      sync.Mutex
	targets []string // what the SSH server forwarded to
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{
		t:        t,
		dir:      t.TempDir(),
		dev:      tun.NewMemory(mtu, 8),
		capture:  &enginetest.Capture{},
		resolver: enginetest.NewResolver(map[string][]netip.Addr{"mail.corp.example": {netip.MustParseAddr("10.5.0.1")}}),
		// Every flow is alice's, the user the configuration is read
		// for, so its profiles carry them (allowed_users' default).
		owners:   anyOwner(&platform.Owner{UID: 1000}),
		prompter: &prompttest.Prompter{},
	}
	w.app = netstacktest.NewAppHost(t, w.dev, mtu)
	echo := brokertest.Echo(t)
	priv := brokertest.NewPrivateKey(t)
	key, _ := ssh.NewSignerFromKey(priv)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(w.dir, "id"), pem.EncodeToMemory(block), 0o600)
	w.srv = brokertest.NewWithOptions(t, brokertest.Options{
		Authorized: []ssh.PublicKey{key.PublicKey()},
		Password:   worldPassword, // for profiles that log in with one
		Dial: func(network, addr string) (net.Conn, error) {
			w.mu.Lock()
			w.targets = append(w.targets, addr)
			w.mu.Unlock()
			return net.Dial(network, echo)
		},
	})
	os.WriteFile(filepath.Join(w.dir, "known_hosts"), []byte(w.srv.KnownHostsLine()), 0o600)
	w.dialer = &routertest.Dialer{Connect: func(ctx context.Context, c routertest.Call) (net.Conn, error) {
		if c.Addr == w.srv.Addr {
			return (&net.Dialer{}).DialContext(ctx, "tcp", c.Addr) // the broker's SSH connection
		}
		return routertest.Echo(), nil // a direct flow
	}}
	var logs bytes.Buffer
	var logMu sync.Mutex
	w.log = logrus.New()
	w.log.Out = lockedWriter{&logMu, &logs}
	w.log.Level = logrus.DebugLevel
	t.Cleanup(func() {
		if t.Failed() {
			logMu.Lock()
			t.Logf("engine log:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	return w
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// config is a configuration with profile gw (the SSH server) and rules,
// read on a machine of its own whose files are the world's.
func (w *world) config(rules string) *config.Config {
	w.t.Helper()
	cfg, err := w.parse(rules)
	if err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

func (w *world) parse(rest string) (*config.Config, error) {
	return w.parseProfiles("", rest)
}

// profile is a profile named name, in YAML, for the SSH server on port,
// with the world's key and known hosts.
func (w *world) profile(name string, port int) string {
	return fmt.Sprintf(`  - name: %s
    host: 127.0.0.1
    port: %d
    user: alice
    identity_files: [%s]
    identities_only: true
    auth_methods: [publickey]
    known_hosts: %s
`, name, port, filepath.Join(w.dir, "id"), filepath.Join(w.dir, "known_hosts"))
}

// parseProfiles is parse with profiles (w.profile's) after gw.
func (w *world) parseProfiles(profiles, rest string) (*config.Config, error) {
	yaml := fmt.Sprintf(`profiles:
%s%stun:
  mtu: %d
%s
state_dir: %s
`, w.profile("gw", w.srv.Port()), profiles, mtu, rest, filepath.Join(w.dir, "state"))
	m := machine()
	m.ReadFile, m.Stat = os.ReadFile, os.Stat // the world's files, in a directory of the test's
	return config.ParseWith("shunt.yaml", []byte(yaml), config.Options{Machine: m, SSHConfigFiles: []string{}})
}

func (w *world) deps() engine.Deps {
	return engine.Deps{
		Device:   w.dev,
		Capture:  w.capture,
		Owners:   w.owners.Open,
		Prompter: w.prompter,
		Dialer:   w.dialer,
		Resolve:  w.resolver.Resolve,
		Getenv:   func(string) string { return "" }, // no agent, no askpass
		Log:      w.log,
	}
}

// start starts an engine on cfg; it is closed when the test ends.
func (w *world) start(cfg *config.Config) *engine.Engine {
	w.t.Helper()
	e, err := engine.New(cfg, w.deps())
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { e.Close() })
	if err := e.Start(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	return e
}

func (w *world) forwarded() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.targets)
}

// dial connects from the application host through the engine.
func (w *world) dial(dst string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return w.app.Dial(ctx, netip.MustParseAddrPort(dst))
}

// roundTrip sends data on c and checks that the same comes back.
func roundTrip(t *testing.T, c net.Conn, n int) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	errc := make(chan error, 1)
	go func() { _, err := c.Write(data); errc <- err }()
	got := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the echo differs from what was sent")
	}
}

func mustDial(t *testing.T, w *world, dst string) net.Conn {
	t.Helper()
	c, err := w.dial(dst)
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func refused(t *testing.T, w *world, dst string) {
	t.Helper()
	c, err := w.dial(dst)
	if err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded, want a refused connection", dst)
	}
	if !strings.Contains(err.Error(), "refused") {
		t.Fatalf("dial %s: %v, want a refused connection (RST)", dst, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

const rules = `rules:
  - name: no-telnet
    destinations: [10.1.0.0/24]
    ports: [23]
    action: block
  - name: internal
    destinations: [10.1.0.0/24, 10.2.0.0/24]
    ports: [80]
    action: tunnel
    profile: gw
`

// A tunnelled flow carries data end to end through the SSH server; a
// blocked one is refused (RST) with nothing dialled; a captured flow no
// rule matches goes direct, through the bypass dialer.
func TestEngineCarriesFlows(t *testing.T) {
	w := newWorld(t)
	w.start(w.config(rules))
	if got, want := w.capture.Routes(), pfx("10.1.0.0/24", "10.2.0.0/24"); !slices.Equal(got, want) {
		t.Errorf("routes %v, want %v", got, want)
	}
	if d := w.capture.Device(); d != "memtun" {
		t.Errorf("routed to device %q, want the device's own name memtun", d)
	}

	c := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, c, 1<<20)
	if got := w.forwarded(); !slices.Equal(got, []string{"10.1.0.7:80"}) {
		t.Errorf("the SSH server forwarded to %v, want 10.1.0.7:80", got)
	}

	refused(t, w, "10.1.0.7:23")

	d := mustDial(t, w, "10.1.0.7:443")
	roundTrip(t, d, 64<<10)
	dials := w.dialer.Dials()
	if !slices.Contains(dials, "direct/10.1.0.7:443") {
		t.Errorf("dials %v: the unmatched flow did not go direct through the bypass dialer", dials)
	}
	for _, d := range dials {
		if strings.HasSuffix(d, ":23") {
			t.Errorf("the blocked flow was dialled: %v", dials)
		}
	}
	if got := w.forwarded(); len(got) != 1 {
		t.Errorf("the SSH server forwarded %v: only the tunnel rule's flow goes there", got)
	}
	if q := w.prompter.Asked(); len(q) != 0 {
		t.Errorf("the key login asked %v", q)
	}
}

// nextRules block 10.1.0.0/24:80, drop 10.2.0.0/24 and add 10.4.0.0/24
// and a host name.
const nextRules = `dns:
  enabled: false # the rules' host names resolved here, their answers routed
rules:
  - name: no-web
    destinations: [10.1.0.0/24]
    ports: [80]
    action: block
  - name: new
    destinations: [10.4.0.0/24, mail.corp.example]
    action: tunnel
    profile: gw
`

// Reload swaps the rules, the always-direct applications and the proxy
// rules, resolves the host names again and routes by difference: a new
// flow follows the new rules while a running flow goes on, and a
// destination captured before and after is never unrouted. A
// configuration that cannot be put in force is refused, and the rules in
// force keep working.
func TestEngineReload(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("always_direct_applications needs owner lookups, Linux only")
	}
	w := newWorld(t)
	e := w.start(w.config(rules))
	running := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, running, 64<<10)

	next := w.config(nextRules)
	if err := e.Reload(next); err != nil {
		t.Fatal(err)
	}
	refused(t, w, "10.1.0.8:80")
	roundTrip(t, running, 64<<10) // decided before the reload, it goes on
	roundTrip(t, mustDial(t, w, "10.4.0.9:80"), 64<<10)
	roundTrip(t, mustDial(t, w, "10.5.0.1:25"), 1000)
	if got, want := w.capture.Routes(), pfx("10.1.0.0/24", "10.4.0.0/24", "10.5.0.1/32"); !slices.Equal(got, want) {
		t.Errorf("routes after the reload %v, want %v", got, want)
	}
	if got := w.resolver.Watching(); len(got) != 1 || !slices.Equal(got[0], []string{"mail.corp.example"}) {
		t.Errorf("the resolver watches %v, want the new rules' host names only", got)
	}
	// A new DNS answer moves the route.
	w.resolver.Set("mail.corp.example", netip.MustParseAddr("10.5.0.2"))
	waitFor(t, "the route to follow the new answer", func() bool {
		return slices.Equal(w.capture.Routes(), pfx("10.1.0.0/24", "10.4.0.0/24", "10.5.0.2/32"))
	})

	// Refused as a whole: the TUN device changed, and a value that does
	// not convert. The rules in force stay.
	sets := len(w.capture.Sets())
	cfg := w.config("rules:\n  - action: tunnel\n    profile: gw\n")
	cfg.TUN.MTU = 9000
	if err := e.Reload(cfg); err == nil || !strings.Contains(err.Error(), `shunt.yaml:`+fmt.Sprint(cfg.TUN.Line)+`: tun changed (name shunt0, mtu 9000, in force: name shunt0, mtu 1500)`) {
		t.Errorf("reload with a changed TUN: %v", err)
	}
	bad := *next
	bad.Rules = slices.Clone(next.Rules)
	bad.Rules[1].Action = "drop"
	if err := e.Reload(&bad); err == nil || !strings.Contains(err.Error(), `shunt.yaml:`+fmt.Sprint(next.Rules[1].Line)+`: rule #2: unknown action "drop"`) {
		t.Errorf("reload with an action that does not convert: %v", err)
	}
	refused(t, w, "10.1.0.8:80")
	roundTrip(t, mustDial(t, w, "10.4.0.9:80"), 1000)
	if n := len(w.capture.Sets()); n != sets {
		t.Errorf("a refused reload changed the routes (%d route sets, want %d)", n, sets)
	}

	// Always-direct applications need the owner lookup, opened now.
	w.owners.SetAny(&platform.Owner{Name: "mutt", Exe: "/usr/bin/mutt", UID: 1000})
	if err := e.Reload(w.config("always_direct_applications: [mutt]\n" + nextRules)); err != nil {
		t.Fatal(err)
	}
	if w.owners.Opens() != 1 {
		t.Errorf("the owner lookup was opened %d times, want once, at the reload that needs it", w.owners.Opens())
	}
	roundTrip(t, mustDial(t, w, "10.4.0.10:80"), 1000)
	if dials := w.dialer.Dials(); !slices.Contains(dials, "direct/10.4.0.10:80") {
		t.Errorf("dials %v: mutt's flow did not go direct", dials)
	}

	// 10.1.0.0/24 was captured throughout: no route set ever left it out.
	for i, s := range w.capture.Sets() {
		if !slices.Contains(s, netip.MustParsePrefix("10.1.0.0/24")) {
			t.Errorf("route set %d, %v, unrouted 10.1.0.0/24 while the rules kept it", i, s)
		}
	}
	if w.capture.Ups() != 1 || w.capture.Closes() != 0 {
		t.Errorf("the capture was set up %d times and closed %d times during reloads, want once and never", w.capture.Ups(), w.capture.Closes())
	}
}

// Reloaded proxy rules carry the next SSH connection.
func TestEngineReloadProxyRules(t *testing.T) {
	w := newWorld(t)
	const proxy = "192.0.2.99:1080"
	connect := w.dialer.Connect
	w.dialer.Connect = func(ctx context.Context, c routertest.Call) (net.Conn, error) {
		if c.Addr == proxy {
			return nil, errors.New("proxy down")
		}
		return connect(ctx, c)
	}
	e := w.start(w.config(rules))
	if err := e.Reload(w.config("proxy_rules:\n  - proxy: socks5://" + proxy + "\n" + rules)); err != nil {
		t.Fatal(err)
	}
	refused(t, w, "10.1.0.7:80")
	if dials := w.dialer.Dials(); !slices.Contains(dials, "direct/"+proxy) || slices.Contains(dials, "direct/"+w.srv.Addr) {
		t.Errorf("dials %v: the SSH connection did not go to the new rules' proxy", dials)
	}
	if got := e.Explain(router.Flow{Dst: netip.MustParseAddrPort("10.1.0.7:80")}).Route; got != fmt.Sprintf("via socks5://%s (proxy rule 1) to alice@127.0.0.1:%d", proxy, w.srv.Port()) {
		t.Errorf("explained route %q", got)
	}
}

// A step of New or Start that fails closes what the engine took over or
// had opened: the device, the capture, the owner lookup, the resolver.
// (shunt up left the TUN open when the owner lookup failed.)
func TestEngineFailureClosesEverything(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("rules with applications need owner lookups, Linux only")
	}
	const appRules = `rules:
  - applications: [thunderbird]
    destinations: [10.1.0.0/24, mail.corp.example]
    action: tunnel
    profile: gw
`
	for _, tt := range []struct {
		name   string
		rules  string
		break_ func(*world, *config.Config) (context.Context, *config.Config)
		want   string
		// What was opened before the failing step and must be closed.
		owners, resolver bool
	}{
		{"owner lookup fails", appRules, func(w *world, c *config.Config) (context.Context, *config.Config) {
			w.owners.OpenErr = errors.New("no sock_diag here")
			return context.Background(), c
		}, "rules name applications or users, or profiles carry only their allowed_users' flows, but flows cannot be traced to processes here (allowed_users: any on every profile needs no tracing): no sock_diag here", false, false},
		{"resolver fails", appRules, func(w *world, c *config.Config) (context.Context, *config.Config) {
			w.resolver.Err = errors.New("no name server")
			return context.Background(), c
		}, "no name server", true, false},
		{"capture fails", appRules, func(w *world, c *config.Config) (context.Context, *config.Config) {
			w.capture.UpErr = errors.New("netlink says no")
			return context.Background(), c
		}, "netlink says no", true, true},
		{"start cut short", appRules, func(w *world, c *config.Config) (context.Context, *config.Config) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, c
		}, context.Canceled.Error(), true, true},
		{"configuration does not convert", rules, func(w *world, c *config.Config) (context.Context, *config.Config) {
			bad := *c
			bad.Rules = slices.Clone(c.Rules)
			bad.Rules[0].Action = "drop"
			return context.Background(), &bad
		}, `rule #1: unknown action "drop"`, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			ctx, cfg := tt.break_(w, w.config(tt.rules))
			e, err := engine.New(cfg, w.deps())
			if err == nil {
				err = e.Start(ctx)
				if err == nil {
					e.Close()
					t.Fatal("started")
				}
				select {
				case <-e.Removed():
				default:
					t.Error("Removed is still open after a failed Start")
				}
				if err := e.Close(); err != nil {
					t.Errorf("Close after a failed Start: %v", err)
				}
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if w.dev.Inject([]byte{0x45}) {
				t.Error("the device was left open")
			}
			if n := w.capture.Closes(); n != 1 {
				t.Errorf("the capture was closed %d times, want once", n)
			}
			if tt.owners && (w.owners.Opens() != 1 || w.owners.Closes() != 1) {
				t.Errorf("the owner lookup was opened %d and closed %d times, want once each", w.owners.Opens(), w.owners.Closes())
			}
			if tt.resolver && len(w.resolver.Watching()) != 0 {
				t.Errorf("the resolver still watches %v", w.resolver.Watching())
			}
		})
	}
}

// Close ends the flows and removes everything; Hurry removes the
// capture at once, while a flow is still open, and Close then does not
// wait for the flows.
func TestEngineCloseAndHurry(t *testing.T) {
	for _, hurry := range []bool{false, true} {
		t.Run(fmt.Sprint("hurry=", hurry), func(t *testing.T) {
			w := newWorld(t)
			e := w.start(w.config(`rules:
  - destinations: [10.1.0.0/24, mail.corp.example]
    action: tunnel
    profile: gw
`))
			c := mustDial(t, w, "10.1.0.7:80")
			roundTrip(t, c, 1000)
			if hurry {
				e.Hurry()
				select {
				case <-e.Removed():
				default:
					t.Fatal("Removed is open after Hurry")
				}
				if w.capture.Closes() != 1 || len(w.capture.Routes()) != 0 {
					t.Fatalf("Hurry left the capture (closed %d times, routes %v)", w.capture.Closes(), w.capture.Routes())
				}
				roundTrip(t, c, 1000) // the stack still runs until Close
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			// The flow ended with the engine: its channel is closed. (The
			// application sees nothing more: the device is gone.)
			waitFor(t, "the flow's SSH channel to close", func() bool { return w.srv.OpenChannels.Load() == 0 })
			if w.capture.Closes() != 1 || w.dev.Inject([]byte{0x45}) || len(w.resolver.Watching()) != 0 {
				t.Errorf("after Close: capture closed %d times, device open %v, resolver watching %v", w.capture.Closes(), w.dev.Inject([]byte{0x45}), w.resolver.Watching())
			}
			select {
			case <-e.Removed():
			default:
				t.Error("Removed is open after Close")
			}
			if err := e.Close(); err != nil {
				t.Errorf("a second Close: %v", err)
			}
			if err := e.Reload(w.config(rules)); err == nil {
				t.Error("Reload after Close succeeded")
			}
		})
	}
}

// Explain gives the decision and the route the engine uses, for the rules
// in force, with the answers in force.
func TestEngineExplain(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	ex := e.Explain(router.Flow{Dst: netip.MustParseAddrPort("10.1.0.7:80")})
	want := fmt.Sprintf("direct to alice@127.0.0.1:%d", w.srv.Port())
	if !ex.Captured || ex.Prefix != netip.MustParsePrefix("10.1.0.0/24") || ex.CaptureRule != `#1 "no-telnet"` ||
		ex.Decision.Action != router.Tunnel || ex.Decision.Index != 1 || ex.Profile != "gw" ||
		ex.Server != fmt.Sprintf("alice@127.0.0.1 port %d", w.srv.Port()) || ex.Route != want {
		t.Errorf("explain 10.1.0.7:80 = %+v", ex)
	}
	if len(ex.Steps) != 2 || ex.Steps[0].Matched || !ex.Steps[1].Matched {
		t.Errorf("steps %+v", ex.Steps)
	}
	if ex := e.Explain(router.Flow{Dst: netip.MustParseAddrPort("127.0.0.1:80")}); ex.Captured || !ex.Loopback {
		t.Errorf("a loopback destination: captured %v, loopback %v", ex.Captured, ex.Loopback)
	}
	if err := e.Reload(w.config(nextRules)); err != nil {
		t.Fatal(err)
	}
	ex = e.Explain(router.Flow{Dst: netip.MustParseAddrPort("10.5.0.1:25"), Names: []string{"mail.corp.example"}})
	if !ex.Captured || ex.Prefix != netip.MustParsePrefix("10.5.0.1/32") || ex.CaptureRule != `#2 "new"` || ex.Decision.Action != router.Tunnel {
		t.Errorf("after the reload, explain 10.5.0.1:25 = %+v", ex)
	}
}

// anyOwner is an owner lookup whose every flow is owner's.
func anyOwner(owner *platform.Owner) *platformtest.Owners {
	o := &platformtest.Owners{}
	o.SetAny(owner)
	return o
}
