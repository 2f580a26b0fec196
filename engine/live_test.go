package engine_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker/prompt"
	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/state"
)

// The control socket's default and the configuration's are one path.
func TestDefaultSocket(t *testing.T) {
	if config.DefaultControlSocket != control.DefaultSocket {
		t.Errorf("config.DefaultControlSocket %q, control.DefaultSocket %q", config.DefaultControlSocket, control.DefaultSocket)
	}
}

// flowTo finds the flow to dst in a status.
func flowTo(st state.Status, dst string) (state.Flow, bool) {
	i := slices.IndexFunc(st.Flows, func(f state.Flow) bool { return f.Dst == dst })
	if i < 0 {
		return state.Flow{}, false
	}
	return st.Flows[i], true
}

// next reads events until one of kind comes.
func next(t *testing.T, events <-chan state.Event, kind string) state.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the events ended before a %s event", kind)
			}
			if e.Event == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

// Status shows the capture, the profile and a running flow with its
// bytes as they grow; the events announce the flow's open and its close
// with its totals; Close ends the subscriptions and the capture.
func TestEngineStatusAndEvents(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	events, cancel := e.Subscribe(64)
	defer cancel()
	st := e.Status()
	if !st.Capture || len(st.Flows) != 0 || st.Prompts == nil || len(st.Profiles) != 1 || st.Profiles[0].Name != "gw" || st.Profiles[0].State != state.Idle {
		t.Fatalf("status at start %+v", st)
	}

	c := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, c, 100000)
	// The splice counts a chunk just after writing it: the application
	// may have read it a moment before.
	counted := func(n int64) bool {
		f, _ := flowTo(e.Status(), "10.1.0.7:80")
		return f.Sent == n && f.Received == n
	}
	waitFor(t, "the flow's bytes to be counted", func() bool { return counted(100000) })
	f, ok := flowTo(e.Status(), "10.1.0.7:80")
	if !ok || f.Profile != "gw" || f.Action != "tunnel" || f.Rule != `#2 "internal"` || f.Sent != 100000 || f.Received != 100000 {
		t.Fatalf("flow in status %+v (found %v)", f, ok)
	}
	roundTrip(t, c, 5000)
	waitFor(t, "the bytes of more data to be counted", func() bool { return counted(105000) })
	if p := e.Status().Profiles[0]; p.State != state.Connected || p.Channels != 1 {
		t.Errorf("profile %+v, want connected with one channel", p)
	}
	if open := next(t, events, state.EventOpen); open.Flow.ID != f.ID {
		t.Errorf("open event for flow %d, want %d", open.Flow.ID, f.ID)
	}
	c.Close()
	closed := next(t, events, state.EventClose)
	if closed.Flow.ID != f.ID || closed.Flow.Sent != 105000 || closed.Flow.Received != 105000 || closed.Duration <= 0 {
		t.Errorf("close event %+v, flow %+v", closed, closed.Flow)
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if e.Status().Capture {
		t.Error("capture on after Close")
	}
	for range events {
	}
	late, _ := e.Subscribe(1)
	if _, ok := <-late; ok {
		t.Error("a subscription after Close delivered an event")
	}
}

// CloseFlow resets one flow (the application sees a reset, not a clean
// end) and leaves the others.
func TestEngineCloseFlow(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	a := mustDial(t, w, "10.1.0.7:80")
	b := mustDial(t, w, "10.1.0.8:80")
	roundTrip(t, a, 1000)
	roundTrip(t, b, 1000)
	fa, _ := flowTo(e.Status(), "10.1.0.7:80")
	if !e.CloseFlow(fa.ID) {
		t.Fatal("CloseFlow found no flow")
	}
	a.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(a); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("the closed flow's read: %v, want a reset", err)
	}
	roundTrip(t, b, 1000)
	waitFor(t, "the closed flow to leave the table", func() bool {
		_, ok := flowTo(e.Status(), "10.1.0.7:80")
		return !ok
	})
	if _, ok := flowTo(e.Status(), "10.1.0.8:80"); !ok {
		t.Error("the other flow left the table")
	}
	if e.CloseFlow(fa.ID) || e.CloseFlow(9999) {
		t.Error("CloseFlow of a flow that is gone reported one closed")
	}
}

// Connect logs the profile in before any flow; Disconnect closes its
// connection and resets its flows.
func TestEngineConnectDisconnect(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := e.Connect(ctx, "gw"); err != nil {
		t.Fatal(err)
	}
	if p := e.Status().Profiles[0]; p.State != state.Connected || p.Connections != 1 {
		t.Fatalf("after Connect %+v", p)
	}
	c := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, c, 1000)
	if err := e.Disconnect("gw"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.ReadAll(c); err == nil || !strings.Contains(err.Error(), "reset") {
		t.Errorf("the flow after Disconnect: %v, want a reset", err)
	}
	if p := e.Status().Profiles[0]; p.State != state.Idle {
		t.Errorf("after Disconnect the profile is %s", p.State)
	}
	if err := e.Connect(ctx, "nope"); err == nil {
		t.Error("Connect of an unknown profile succeeded")
	}
}

// With nobody to ask (no terminal, no askpass), a password prompt is
// pending in Status and announced; Answer answers it and the waiting flow
// goes through. The answer is in no status and no event.
func TestEnginePromptQueue(t *testing.T) {
	w := newWorld(t)
	cfg := w.config(rules)
	cfg.Profiles[0].AuthMethods = []string{config.AuthPassword}
	deps := w.deps()
	deps.Prompter = &prompt.Queue{}
	e, err := engine.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	events, cancel := e.Subscribe(64)
	defer cancel()

	done := make(chan error, 1)
	go func() {
		c, err := w.dial("10.1.0.7:80")
		if err == nil {
			roundTrip(t, c, 1000)
			c.Close()
		}
		done <- err
	}()
	ev := next(t, events, state.EventPrompt)
	if ev.Prompt.Profile != "gw" || ev.Prompt.Kind != state.PromptPassword {
		t.Errorf("prompt event %+v", ev.Prompt)
	}
	var pending []state.Prompt
	waitFor(t, "the prompt in status", func() bool { pending = e.Status().Prompts; return len(pending) == 1 })
	if p := e.Status().Profiles[0]; p.State != state.WaitingForAuth {
		t.Errorf("profile waiting for the answer is %s", p.State)
	}
	if err := e.Answer("nope", worldPassword); !errors.Is(err, prompt.ErrNoPrompt) || strings.Contains(err.Error(), worldPassword) {
		t.Errorf("an answer to no prompt: %v", err)
	}
	if err := e.Answer(pending[0].ID, worldPassword); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the flow waiting for the password: %v", err)
	}
	if st := e.Status(); len(st.Prompts) != 0 || strings.Contains(fmtStatus(st), worldPassword) {
		t.Errorf("status after the answer %+v", st)
	}
}

func fmtStatus(st state.Status) string {
	var b strings.Builder
	for _, p := range st.Prompts {
		b.WriteString(p.Message)
	}
	for _, p := range st.Profiles {
		b.WriteString(p.Error)
	}
	return b.String()
}

// A terminal prompter has no queue: nothing is pending, and Answer says
// why.
func TestEngineAnswerWithoutQueue(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	if err := e.Answer("1", "x"); !errors.Is(err, prompt.ErrNoPrompt) || !strings.Contains(err.Error(), "asks at its terminal") {
		t.Errorf("Answer with a terminal prompter: %v", err)
	}
}

// Backend.Reload reads the configuration through Deps.Load: a broken one
// is refused with its file:line problems and the rules in force stay; a
// good one is put in force.
func TestEngineReloadFiles(t *testing.T) {
	w := newWorld(t)
	var next func() (*config.Config, error)
	deps := w.deps()
	deps.Load = func() (*config.Config, error) { return next() }
	e, err := engine.New(w.config(rules), deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := e.Control()
	next = func() (*config.Config, error) { return w.parse("rules:\n  - action: drop\n    ports: [80]\n") }
	err = b.Reload(context.Background(), control.ReloadOptions{})
	if err == nil || !strings.Contains(err.Error(), `shunt.yaml:13: rule #1: unknown action "drop"`) {
		t.Fatalf("reload of a broken configuration: %v", err)
	}
	roundTrip(t, mustDial(t, w, "10.1.0.7:80"), 1000) // the old rules
	next = func() (*config.Config, error) { return w.parse(nextRules) }
	if err := b.Reload(context.Background(), control.ReloadOptions{}); err != nil {
		t.Fatal(err)
	}
	refused(t, w, "10.1.0.8:80")

	deps = w.deps()
	e2, err := engine.New(w.config(rules), deps)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if err := e2.Control().Reload(context.Background(), control.ReloadOptions{}); err == nil {
		t.Error("Reload without Deps.Load succeeded")
	}
}

// Stop refuses new flows at once (never sending them direct) while the
// routes stay, lets a running flow finish within shutdown_grace, and then
// removes everything; a flow still open when the grace ends is reset.
func TestEngineStop(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config("shutdown_grace: 10m\n" + rules))
	running := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, running, 1000)
	stopped := make(chan error, 1)
	go func() { stopped <- e.Stop(context.Background()) }()
	select {
	case <-e.Stopping():
	case <-time.After(20 * time.Second):
		t.Fatal("Stopping is open after Stop")
	}
	waitFor(t, "new flows to be refused", func() bool {
		c, err := w.dial("10.1.0.9:443")
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	refused(t, w, "10.1.0.9:80")
	if dials := w.dialer.Dials(); slices.Contains(dials, "direct/10.1.0.9:443") {
		t.Errorf("a flow that came while stopping went direct: %v", dials)
	}
	roundTrip(t, running, 1000) // still running, within the grace
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a flow runs within the grace", err)
	default:
	}
	if w.capture.Closes() != 0 || !e.Status().Capture {
		t.Fatal("the capture was removed during the grace")
	}
	running.Close()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return once the last flow ended")
	}
	if w.capture.Closes() != 1 || w.dev.Inject([]byte{0x45}) {
		t.Error("Stop left the capture or the device")
	}

	// A flow that outlives the grace is reset.
	w = newWorld(t)
	e = w.start(w.config("shutdown_grace: 100ms\n" + rules))
	held := mustDial(t, w, "10.1.0.7:80")
	roundTrip(t, held, 1000)
	if err := e.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.capture.Closes() != 1 {
		t.Error("the capture is left after the grace")
	}
	waitFor(t, "the held flow's SSH channel to close", func() bool { return w.srv.OpenChannels.Load() == 0 })
}

// While anyone subscribes, bytes events carry the running flows' counts
// as they change, and only those that changed.
func TestEngineBytesEvents(t *testing.T) {
	w := newWorld(t)
	e := w.start(w.config(rules))
	events, cancel := e.Subscribe(64)
	defer cancel()
	a := mustDial(t, w, "10.1.0.7:80")
	b := mustDial(t, w, "10.1.0.8:80")
	roundTrip(t, a, 1000)
	roundTrip(t, b, 1000)
	fa, _ := flowTo(e.Status(), "10.1.0.7:80")
	fb, _ := flowTo(e.Status(), "10.1.0.8:80")
	// seen reads bytes events until each flow of want has had its
	// counts in one, and returns the flows they named.
	seen := func(want map[uint64]int64) map[uint64]bool {
		t.Helper()
		named := map[uint64]bool{}
		for len(want) > 0 {
			ev := next(t, events, state.EventBytes)
			for _, f := range ev.Flows {
				named[f.ID] = true
				if n, ok := want[f.ID]; ok && f.Sent == n && f.Received == n {
					delete(want, f.ID)
				}
			}
		}
		return named
	}
	seen(map[uint64]int64{fa.ID: 1000, fb.ID: 1000})
	// The profile's totals follow in a bytes event of their own kind of
	// change: no state changed, only its bytes.
	before := e.Status().Profiles[0].Received
	roundTrip(t, a, 500)
	for {
		ev := next(t, events, state.EventBytes)
		if i := slices.IndexFunc(ev.Profiles, func(p state.Profile) bool { return p.Received >= before+500 }); i >= 0 {
			break
		}
	}
	roundTrip(t, a, 500)
	if named := seen(map[uint64]int64{fa.ID: 2000}); named[fb.ID] {
		t.Errorf("a bytes event named flow %d, whose counts did not change", fb.ID)
	}
	a.Close()
	b.Close()
}
