package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/state"
)

// syncBuffer is a log's output, read while the server writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	b      *controltest.Backend
	srv    *control.Server
	c      *control.Client
	log    *syncBuffer
	socket string
}

// start serves a fake backend on a socket of the test's own, logging
// everything (debug included).
func start(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{b: &controltest.Backend{}, log: &syncBuffer{}, socket: filepath.Join(t.TempDir(), "s")}
	log := logrus.New()
	log.Out = f.log
	log.Level = logrus.DebugLevel
	srv, err := control.NewServer(control.Options{Socket: f.socket, Backend: f.b, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.srv = srv
	f.c = &control.Client{Socket: f.socket}
	return f
}

// raw sends a request as any HTTP client would, without following
// redirects, and returns the status, the Content-Type and the body.
func raw(t testing.TB, socket, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	hc := &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequest(method, "http://shunt"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "application/x-ndjson" {
		return resp.StatusCode, resp.Header, nil // a stream: not read
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func sample() state.Status {
	return state.Status{
		Capture: true,
		Profiles: []state.Profile{
			{Name: "office", State: state.Connected, Server: "gw.corp:22", Route: "direct", Since: t0, Connections: 1, Channels: 2, Sent: 1000, Received: 64 << 20, Reconnects: 1},
			{Name: "jump", Via: "db1.corp:22", State: state.Backoff, Server: "db1.corp:22", Route: "via office", Since: t0.Add(time.Minute), Error: "ssh: handshake failed: EOF"},
			{Name: "home", State: state.WaitingForAuth, Server: "home.example:2222", Since: t0},
		},
		Flows: []state.Flow{
			{ID: 7, Src: "10.0.0.2:40000", Dst: "10.1.0.5:993", Name: "imap.corp", App: "/usr/bin/thunderbird", UID: 1000, Rule: `rule #1 "mail"`, Action: "tunnel", Profile: "office", Server: "gw.corp:22", Sent: 5, Received: 70000, Started: t0, State: state.FlowOpen},
			{ID: 8, Src: "10.0.0.2:40001", Dst: "10.1.0.9:443", UID: -1, Action: "direct", Started: t0.Add(2 * time.Second), State: state.FlowSettingUp},
		},
		Prompts: []state.Prompt{
			{ID: "p1", Profile: "home", Kind: state.PromptPassword, Message: "alice@home.example's password:", Created: t0},
		},
	}
}

func TestStatusFlowsPrompts(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	// Empty lists are lists, not null, for scripts.
	code, h, body := raw(t, f.socket, "GET", "/v1/status", "")
	if code != 200 || h.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"profiles":[]`) ||
		!strings.Contains(string(body), `"flows":[]`) || !strings.Contains(string(body), `"prompts":[]`) {
		t.Errorf("empty status: %d %s %s", code, h.Get("Content-Type"), body)
	}
	want := sample()
	f.b.SetStatus(want)
	st, err := f.c.Status(ctx)
	if err != nil || !reflect.DeepEqual(st, want) {
		t.Errorf("Status = %+v, %v\nwant %+v", st, err, want)
	}
	flows, err := f.c.Flows(ctx)
	if err != nil || !reflect.DeepEqual(flows, want.Flows) {
		t.Errorf("Flows = %+v, %v", flows, err)
	}
	prompts, err := f.c.Prompts(ctx)
	if err != nil || !reflect.DeepEqual(prompts, want.Prompts) {
		t.Errorf("Prompts = %+v, %v", prompts, err)
	}
	// The JSON names are the contract's.
	_, _, body = raw(t, f.socket, "GET", "/v1/status", "")
	for _, name := range []string{`"capture":true`, `"name":"office"`, `"state":"connected"`, `"server":"gw.corp:22"`, `"channels":2`,
		`"sent":1000`, `"received":67108864`, `"reconnects":1`, `"error":"ssh: handshake failed: EOF"`,
		`"id":7`, `"src":"10.0.0.2:40000"`, `"dst":"10.1.0.5:993"`, `"name":"imap.corp"`, `"app":"/usr/bin/thunderbird"`, `"uid":1000`,
		`"rule":"rule #1 \"mail\""`, `"action":"tunnel"`, `"profile":"office"`, `"started":"2026-12-01T10:00:00Z"`,
		`"id":"p1"`, `"kind":"password"`, `"message":"alice@home.example's password:"`} {
		if !strings.Contains(string(body), name) {
			t.Errorf("GET /v1/status has no %s: %s", name, body)
		}
	}
}

// Every error is JSON {"error": ...}, with a status code that fits.
func TestErrors(t *testing.T) {
	f := start(t)
	f.b.SetStatus(sample())
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"GET", "/v1/nothing", "", 404, "no endpoint /v1/nothing"},
		{"GET", "/", "", 404, "no endpoint /"},
		{"GET", "/v2/status", "", 404, "no endpoint /v2/status"},
		{"POST", "/v1/status", "", 405, "POST /v1/status: use GET"},
		{"GET", "/v1/reload", "", 405, "use POST"},
		{"DELETE", "/v1/flows/7/close", "", 405, "use POST"},
		{"POST", "/v1/profiles/nope/connect", "", 404, `no profile "nope": use one of "office", "home"`},
		{"POST", "/v1/profiles/nope/disconnect", "", 404, `no profile "nope"`},
		{"GET", "/v1/profiles/office/connect", "", 405, "GET /v1/profiles/{name}/connect: use POST"},
		{"POST", "/v1/profiles/office/reboot", "", 404, "no endpoint /v1/profiles/office/reboot"},
		{"POST", "/v1/profiles/a/b/connect", "", 404, "no endpoint"},
		{"POST", "/v1/flows/abc/close", "", 400, `flow id "abc" is not a number: use an id that shunt flows shows`},
		{"POST", "/v1/flows/-1/close", "", 400, "not a number"},
		{"POST", "/v1/flows/99/close", "", 404, "no flow 99 (it may have ended already)"},
		{"POST", "/v1/prompts/p9/answer", `{"answer":"x"}`, 404, `no prompt "p9" is pending`},
		{"POST", "/v1/prompts/p1/answer", `not json`, 400, `the body must be one JSON object, {"answer": "..."}`},
		{"POST", "/v1/prompts/p1/answer", `{"answer":"x","extra":1}`, 400, "the body must be"},
		{"POST", "/v1/prompts/p1/answer", `{}`, 400, "the body must be"},
		{"POST", "/v1/prompts/p1/answer", `{"answer":"` + strings.Repeat("x", 70000) + `"}`, 400, "at most 64 KiB"},
	} {
		code, h, body := raw(t, f.socket, tc.method, tc.path, tc.body)
		var eb struct{ Error string }
		if err := json.Unmarshal(body, &eb); err != nil || code != tc.code || !strings.Contains(eb.Error, tc.want) || h.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s %q, want %d and an error with %q", tc.method, tc.path, code, h.Get("Content-Type"), body, tc.code, tc.want)
		}
		if code == 405 && h.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
	if calls := f.b.Calls(); len(calls) != 1 || calls[0] != "close 99" {
		t.Errorf("the backend was asked %q; want only the close of a flow it might have had", calls)
	}
}

func TestActions(t *testing.T) {
	f := start(t)
	f.b.SetStatus(sample())
	ctx := context.Background()
	var ce *control.Error

	if err := f.c.Reload(ctx); err != nil {
		t.Errorf("Reload: %v", err)
	}
	f.b.SetErrors(controltest.Errors{Reload: errors.Join(
		errors.New(`/etc/shunt/shunt.yaml:3: unknown key "hots" in profiles: did you mean "host"?`),
		errors.New(`/etc/shunt/shunt.yaml:5: rule #1: unknown profile "q": use one of p`))})
	err := f.c.Reload(ctx)
	if !errors.As(err, &ce) || ce.Status != 422 || !reflect.DeepEqual(ce.Problems, []string{
		`/etc/shunt/shunt.yaml:3: unknown key "hots" in profiles: did you mean "host"?`,
		`/etc/shunt/shunt.yaml:5: rule #1: unknown profile "q": use one of p`,
	}) || !strings.Contains(err.Error(), "the old one stays in force") {
		t.Errorf("refused Reload: %#v", err)
	}
	f.b.SetErrors(controltest.Errors{})

	p, err := f.c.Connect(ctx, "home")
	if err != nil || p.Name != "home" || p.State != state.Connected {
		t.Errorf("Connect = %+v, %v", p, err)
	}
	p, err = f.c.Disconnect(ctx, "office")
	if err != nil || p.Name != "office" || p.State != state.Idle {
		t.Errorf("Disconnect = %+v, %v", p, err)
	}
	// A profile known only by its host-from-application servers.
	if p, err := f.c.Connect(ctx, "jump"); err != nil || p.Via != "db1.corp:22" {
		t.Errorf("Connect(jump) = %+v, %v", p, err)
	}
	f.b.SetErrors(controltest.Errors{Connect: errors.New("ssh: handshake failed: EOF"), Disconnect: errors.New("stuck")})
	if _, err := f.c.Connect(ctx, "home"); !errors.As(err, &ce) || ce.Status != 502 || err.Error() != `connecting profile "home": ssh: handshake failed: EOF` {
		t.Errorf("failed Connect: %v", err)
	}
	if _, err := f.c.Disconnect(ctx, "home"); !errors.As(err, &ce) || ce.Status != 500 || err.Error() != `disconnecting profile "home": stuck` {
		t.Errorf("failed Disconnect: %v", err)
	}
	if _, err := f.c.Connect(ctx, ""); err == nil {
		t.Error("Connect of no profile went through")
	}
	f.b.SetErrors(controltest.Errors{})

	if err := f.c.CloseFlow(ctx, 7); err != nil {
		t.Errorf("CloseFlow(7): %v", err)
	}
	if err := f.c.CloseFlow(ctx, 7); !errors.As(err, &ce) || ce.Status != 404 {
		t.Errorf("CloseFlow(7) again: %v, want a 404", err)
	}
	if st := f.b.Status(); len(st.Flows) != 1 || st.Flows[0].ID != 8 {
		t.Errorf("flows after the close: %+v", st.Flows)
	}

	f.b.SetErrors(controltest.Errors{Answer: errors.New("the prompt was cancelled")})
	if err := f.c.Answer(ctx, "p1", "hunter2"); !errors.As(err, &ce) || ce.Status != 409 || err.Error() != `answering prompt "p1": the prompt was cancelled` {
		t.Errorf("refused Answer: %v", err)
	}
	f.b.SetErrors(controltest.Errors{})
	if err := f.c.Answer(ctx, "p1", "hunter2"); err != nil {
		t.Errorf("Answer: %v", err)
	}
	if a, ok := f.b.AnswerFor("p1"); !ok || a != "hunter2" {
		t.Errorf("the backend got answer %q, %v", a, ok)
	}

	if err := f.c.Down(ctx); err != nil {
		t.Errorf("Down: %v", err)
	}
	want := []string{"reload", "reload", "connect home", "disconnect office", "connect jump", "connect home", "disconnect home", "close 7", "close 7", "answer p1", "answer p1", "down"}
	if calls := f.b.Calls(); !reflect.DeepEqual(calls, want) {
		t.Errorf("calls %q\nwant %q", calls, want)
	}
	// Each change is logged, with who asked for it.
	for _, line := range []string{"reload asked for", "the configuration was refused", "connect asked for", "disconnect asked for", "flow reset as asked", "prompt answered", "stop asked for"} {
		if !strings.Contains(f.log.String(), line) {
			t.Errorf("the log has no %q:\n%s", line, f.log)
		}
	}
	if !strings.Contains(f.log.String(), "peer_uid=") {
		t.Errorf("the log does not say who asked:\n%s", f.log)
	}
}

// Names that a path could split or clean reach the backend as they are.
func TestProfileNames(t *testing.T) {
	f := start(t)
	for _, name := range []string{"a/b", "a b", "50%", "%2F", ".", "..", "../status", "ü", "a?b#c", "x/../y", "/", "a\nb"} {
		f.b.SetStatus(state.Status{Profiles: []state.Profile{{Name: name, State: state.Idle}}})
		p, err := f.c.Connect(context.Background(), name)
		calls := f.b.Calls()
		if err != nil || p.Name != name || calls[len(calls)-1] != "connect "+name {
			t.Errorf("Connect(%q) = %+v, %v; the backend was asked %q", name, p, err, calls[len(calls)-1])
		}
	}
}

func FuzzProfileName(f *testing.F) {
	for _, s := range []string{"office", "a/b", "..", "%zz", "a\x00b", "\xff"} {
		f.Add(s)
	}
	fx := start(f)
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" {
			return
		}
		fx.b.SetStatus(state.Status{Profiles: []state.Profile{{Name: name, State: state.Idle}}})
		if _, err := fx.c.Connect(context.Background(), name); err != nil {
			t.Fatalf("Connect(%q): %v", name, err)
		}
		if got := fx.b.LastCall(); got != "connect "+name {
			t.Fatalf("Connect(%q) asked the backend %q", name, got)
		}
	})
}

// Whatever a client sends, the server answers with a status it means and,
// for an error, a JSON error (the mux's redirects to a cleaned path
// aside), and goes on serving.
func FuzzRequest(f *testing.F) {
	for _, seed := range []struct {
		method byte
		path   string
		body   string
	}{
		{0, "/v1/status", ""}, {0, "/v1/events", ""}, {1, "/v1/reload", ""}, {1, "/v1/down", ""},
		{1, "/v1/profiles/office/connect", ""}, {1, "/v1/profiles/a%2Fb/disconnect", ""},
		{1, "/v1/flows/7/close", ""}, {1, "/v1/flows/18446744073709551616/close", ""}, {1, "/v1/flows/%2B1/close", ""},
		{1, "/v1/prompts/p1/answer", `{"answer":"x"}`}, {1, "/v1/prompts/p1/answer", `{"answer":null}`},
		{1, "/v1/prompts/p1/answer", `{"answer":"x"} trailing`}, {2, "/v1//status", ""}, {0, "/v1/flows/../status", ""},
	} {
		f.Add(seed.method, seed.path, seed.body)
	}
	fx := start(f)
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
	f.Fuzz(func(t *testing.T, m byte, path, body string) {
		if !strings.HasPrefix(path, "/") {
			return
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://shunt"+path, strings.NewReader(body))
		if err != nil || req.URL.Host != "shunt" || strings.ContainsFunc(req.URL.RequestURI(), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return // not a request any HTTP server takes
		}
		fx.b.SetStatus(sample())
		code, h, b := raw(t, fx.socket, req.Method, req.URL.RequestURI(), body)
		switch code {
		case 200, 202:
		case 400, 404, 405, 409, 422, 500, 502:
			var eb struct{ Error string }
			if req.Method != "HEAD" && (json.Unmarshal(b, &eb) != nil || eb.Error == "") {
				t.Errorf("%s %s: %d %q, not a JSON error", req.Method, path, code, b)
			}
		case 307:
			if h.Get("Location") == "" {
				t.Errorf("%s %s: a redirect to nowhere", req.Method, path)
			}
		default:
			t.Errorf("%s %s: status %d", req.Method, path, code)
		}
		// raw has closed the response, a stream's too: the server ends
		// the subscription once it sees the client gone, a moment later,
		// so this waits for it rather than counting them at once.
		waitFor(t, "the event subscriptions to end with their clients", func() bool { return fx.b.Subscribers() == 0 })
	})
}

func TestEvents(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	stream, err := f.c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Events returns once subscribed: nothing published now is missed.
	if n := f.b.Subscribers(); n != 1 {
		t.Fatalf("%d subscribers once Events returned, want 1", n)
	}
	sent := []state.Event{
		{Event: state.EventOpen, Time: t0, Flow: &state.Flow{ID: 7, Src: "10.0.0.2:40000", Dst: "10.1.0.5:993", UID: 1000, Action: "tunnel", Started: t0, State: state.FlowOpen}},
		{Event: state.EventState, Time: t0, Profile: &state.Profile{Name: "office", State: state.Connected, Since: t0}},
		{Event: state.EventPrompt, Time: t0, Prompt: &state.Prompt{ID: "p1", Profile: "home", Kind: state.PromptPassword, Message: "password:", Created: t0}},
		{Event: state.EventClose, Time: t0.Add(time.Second), Flow: &state.Flow{ID: 7, UID: 1000, Action: "tunnel", Sent: 5, Received: 9, Started: t0, State: state.FlowClosed}, Reason: "closed by the application", Duration: time.Second},
	}
	for _, ev := range sent {
		f.b.Publish(ev)
	}
	for i, want := range sent {
		got, err := stream.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d = %+v, %v; want %+v", i, got, err, want)
		}
	}
	// The server's subscription ends with the client's.
	stream.Close()
	waitFor(t, "the subscription to end", func() bool { return f.b.Subscribers() == 0 })

	// A backend that stops ends the stream: the client reads io.EOF.
	stream, err = f.c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	f.b.Down()
	if _, err := stream.Next(); err != io.EOF {
		t.Errorf("after Down: %v, want io.EOF", err)
	}
}

// Close ends the streams, and removes the socket.
func TestCloseEndsStreams(t *testing.T) {
	f := start(t)
	stream, err := f.c.Events(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := stream.Next()
		ended <- err
	}()
	if err := f.srv.Close(); err != nil {
		t.Error(err)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Error("an event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream goes on after Close")
	}
	if _, err := f.c.Status(context.Background()); !errors.Is(err, control.ErrNotRunning) {
		t.Errorf("after Close: %v, want ErrNotRunning", err)
	}
}

// A client's context ends its stream.
func TestEventsContext(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := f.c.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	cancel()
	if _, err := stream.Next(); err == nil {
		t.Error("an event after the context ended")
	}
	waitFor(t, "the subscription to end", func() bool { return f.b.Subscribers() == 0 })
}

// waitFor waits, generously, for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// No answer reaches the log, nor any answer of the server, whatever path
// it takes.
func TestAnswerNeverLogged(t *testing.T) {
	const secret = "correct-horse-battery-staple"
	f := start(t)
	f.b.SetStatus(sample())
	var bodies []string
	for _, tc := range []struct{ path, body string }{
		{"/v1/prompts/p1/answer", `{"answer":"` + secret + `","extra":true}`},
		{"/v1/prompts/p1/answer", `{"answer":"` + secret + `"`},
		{"/v1/prompts/p1/answer", `{"answer":` + secret + `}`},
		{"/v1/prompts/p1/answer", `["` + secret + `"]`},
		{"/v1/prompts/nope/answer", `{"answer":"` + secret + `"}`},
		{"/v1/prompts/p1/answer", `{"answer":"` + secret + `"}`},
	} {
		_, _, body := raw(t, f.socket, "POST", tc.path, tc.body)
		bodies = append(bodies, string(body))
	}
	f.b.SetStatus(sample())
	f.b.SetErrors(controltest.Errors{Answer: errors.New("refused")})
	if err := f.c.Answer(context.Background(), "p1", secret); err == nil {
		t.Error("Answer went through")
	}
	if a, _ := f.b.AnswerFor("p1"); a != secret {
		t.Fatalf("the backend did not get the answer (%q): the test tests nothing", a)
	}
	if strings.Contains(f.log.String(), secret) {
		t.Errorf("the answer is in the log:\n%s", f.log)
	}
	for _, b := range bodies {
		if strings.Contains(b, secret) {
			t.Errorf("the answer is in a response: %s", b)
		}
	}
	if !strings.Contains(f.log.String(), "prompt answered") {
		t.Errorf("the log does not say the prompt was answered:\n%s", f.log)
	}
}

func TestClientNotRunning(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	c := &control.Client{Socket: missing}
	ctx := context.Background()
	calls := map[string]func() error{
		"Status":     func() error { _, err := c.Status(ctx); return err },
		"Flows":      func() error { _, err := c.Flows(ctx); return err },
		"Prompts":    func() error { _, err := c.Prompts(ctx); return err },
		"Events":     func() error { _, err := c.Events(ctx); return err },
		"Reload":     func() error { return c.Reload(ctx) },
		"Down":       func() error { return c.Down(ctx) },
		"Connect":    func() error { _, err := c.Connect(ctx, "office"); return err },
		"Disconnect": func() error { _, err := c.Disconnect(ctx, "office"); return err },
		"CloseFlow":  func() error { return c.CloseFlow(ctx, 1) },
		"Answer":     func() error { return c.Answer(ctx, "p1", "x") },
	}
	for name, call := range calls {
		err := call()
		want := "shunt is not running: there is no control socket at " + missing
		if !errors.Is(err, control.ErrNotRunning) || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line starting %q", name, err, want)
		}
	}
	// A socket that a shunt which ended left behind.
	stale := filepath.Join(dir, "stale.sock")
	staleSocket(t, stale)
	_, err := (&control.Client{Socket: stale}).Status(ctx)
	if !errors.Is(err, control.ErrNotRunning) || err.Error() != "shunt is not running: nothing answers on the control socket "+stale+" (a shunt that ended left it)" {
		t.Errorf("stale socket: %v", err)
	}
}

// staleSocket leaves a socket at path that nobody listens on.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}
