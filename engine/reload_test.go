package engine_test

import (
	"context"

	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/router/routertest"
)

// secondServer is another SSH server that accepts the world's key and
// forwards to an echo listener; the world's known hosts and dialer know
// it.
func (w *world) secondServer() *brokertest.Server {
	w.t.Helper()
	pem, err := os.ReadFile(filepath.Join(w.dir, "id"))
	if err != nil {
		w.t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		w.t.Fatal(err)
	}
	echo := brokertest.Echo(w.t)
	srv := brokertest.NewWithOptions(w.t, brokertest.Options{
		Authorized: []ssh.PublicKey{key.PublicKey()},
		Dial:       func(network, addr string) (net.Conn, error) { return net.Dial(network, echo) },
	})
	os.WriteFile(filepath.Join(w.dir, "known_hosts"), []byte(w.srv.KnownHostsLine()+srv.KnownHostsLine()), 0o600)
	connect := w.dialer.Connect
	w.dialer.Connect = func(ctx context.Context, c routertest.Call) (net.Conn, error) {
		if c.Addr == srv.Addr {
			return (&net.Dialer{}).DialContext(ctx, "tcp", c.Addr)
		}
		return connect(ctx, c)
	}
	return srv
}

// profileRules: gw carries 10.1.0.0/24, old 10.2.0.0/24, moving
// 10.3.0.0/24; after the reload old is gone, moving is on the second
// server, and new (on the second server) carries 10.4.0.0/24.
const (
	rulesBefore = `rules:
  - {destinations: [10.1.0.0/24], action: tunnel, profile: gw}
  - {destinations: [10.2.0.0/24], action: tunnel, profile: old}
  - {destinations: [10.3.0.0/24], action: tunnel, profile: moving}
`
	rulesAfter = `rules:
  - {destinations: [10.1.0.0/24], action: tunnel, profile: gw}
  - {destinations: [10.3.0.0/24], action: tunnel, profile: moving}
  - {destinations: [10.4.0.0/24], action: tunnel, profile: new}
`
)

// reloadProfiles starts an engine with gw, old and moving on the world's
// server and a flow through each, then reloads with old removed, moving
// on a second server and a new profile on it.
func reloadProfiles(t *testing.T, opts engine.ReloadOptions) (w *world, srv2 *brokertest.Server, onGw, onOld, onMoving net.Conn) {
	w = newWorld(t)
	srv2 = w.secondServer()
	parse := func(profiles, rules string) *config.Config {
		cfg, err := w.parseProfiles(profiles, rules)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	e := w.start(parse(w.profile("old", w.srv.Port())+w.profile("moving", w.srv.Port()), rulesBefore))
	onGw = mustDial(t, w, "10.1.0.7:80")
	onOld = mustDial(t, w, "10.2.0.7:80")
	onMoving = mustDial(t, w, "10.3.0.7:80")
	for _, c := range []net.Conn{onGw, onOld, onMoving} {
		roundTrip(t, c, 64<<10)
	}
	if err := e.ReloadWith(parse(w.profile("moving", srv2.Port())+w.profile("new", srv2.Port()), rulesAfter), opts); err != nil {
		t.Fatal(err)
	}
	if got, want := w.capture.Routes(), pfx("10.1.0.0/24", "10.3.0.0/24", "10.4.0.0/24"); !slices.Equal(got, want) {
		t.Errorf("routes after the reload %v, want %v", got, want)
	}
	return w, srv2, onGw, onOld, onMoving
}

// A reload swaps the profiles while flows run: a new profile's rule works
// for a new flow, a changed profile's new flows reach its new server, and
// the flows running through the removed profile and through the changed
// profile's old server go on until they end; their old SSH connections
// then close. (Reload refused any change of profiles.)
func TestEngineReloadProfiles(t *testing.T) {
	w, srv2, onGw, onOld, onMoving := reloadProfiles(t, engine.ReloadOptions{})
	roundTrip(t, mustDial(t, w, "10.4.0.9:80"), 64<<10) // new
	roundTrip(t, mustDial(t, w, "10.3.0.9:80"), 64<<10) // moving, now on srv2
	if n := srv2.Accepted.Load(); n != 2 {
		t.Errorf("the second server forwarded %d channels, want 2 (new's and moving's new flows)", n)
	}
	for _, c := range []net.Conn{onGw, onOld, onMoving} {
		roundTrip(t, c, 1<<20) // decided before the reload, they go on
	}
	if n := w.srv.Logins.Load(); n != 3 {
		t.Errorf("%d logins on the first server, want 3 (gw kept its connection)", n)
	}
	for i, set := range w.capture.Sets() {
		if !slices.Contains(set, pfx("10.1.0.0/24")[0]) || !slices.Contains(set, pfx("10.3.0.0/24")[0]) {
			t.Errorf("route set %d, %v, unrouted a destination both configurations keep", i, set)
		}
	}
	onOld.Close()
	onMoving.Close()
	waitFor(t, "the old connections' channels to close", func() bool { return w.srv.OpenChannels.Load() == 1 })
	roundTrip(t, onGw, 1000)
}

// With ResetRemoved, the flows of the removed profile and of the changed
// profile's old server are reset; the unchanged profile's flow goes on.
func TestEngineReloadResetRemoved(t *testing.T) {
	_, _, onGw, onOld, onMoving := reloadProfiles(t, engine.ReloadOptions{ResetRemoved: true})
	for _, c := range []net.Conn{onOld, onMoving} {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err := io.ReadAll(c)
		if err == nil || !strings.Contains(err.Error(), "connection reset") { // gVisor's error, no errno
			t.Errorf("read on a flow of a removed or changed profile: %v, want a reset", err)
		}
	}
	roundTrip(t, onGw, 64<<10)
}
