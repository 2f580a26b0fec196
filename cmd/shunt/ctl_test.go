package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/state"
)

// lockedBuffer is a command's output, read while the command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ctlDaemon serves a fake shunt on a socket of the test's own; the
// server's log goes to the returned buffer.
func ctlDaemon(t *testing.T) (*controltest.Backend, *control.Server, *lockedBuffer) {
	t.Helper()
	b := &controltest.Backend{}
	srv, logs := ctlDaemonWith(t, b)
	return b, srv, logs
}

func ctlDaemonWith(t *testing.T, b control.Backend) (*control.Server, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	log := logrus.New()
	log.Out = logs
	log.Level = logrus.DebugLevel
	srv, err := control.NewServer(control.Options{Socket: filepath.Join(t.TempDir(), "s"), Backend: b, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, logs
}

var ctlT0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// testCtl is a client command's process: stdin as given, no terminal
// (unless the test gives readSecret), SHUNT_SOCKET set to socket, and the
// time ten minutes after ctlT0.
func testCtl(ctx context.Context, socket, stdin string) (*ctl, *lockedBuffer, *lockedBuffer) {
	var stdout, stderr lockedBuffer
	env := map[string]string{control.SocketEnv: socket}
	return &ctl{
		ctx:    ctx,
		stdin:  strings.NewReader(stdin),
		stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		now:    func() time.Time { return ctlT0.Add(10 * time.Minute) },
	}, &stdout, &stderr
}

// ctlRun runs a command to its end.
func ctlRun(t *testing.T, socket string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	c, out, errOut := testCtl(context.Background(), socket, "")
	code = c.run(args[0], args[1:])
	return code, out.String(), errOut.String()
}

func ctlSample() state.Status {
	return state.Status{
		Capture: true,
		Profiles: []state.Profile{
			{Name: "office", State: state.Connected, Server: "gw.corp:22", Route: "direct", Since: ctlT0, Connections: 1, Channels: 2, Sent: 1000, Received: 64 << 20, Reconnects: 1},
			{Name: "jump", Via: "db1.corp", State: state.Backoff, Server: "db1.corp:22", Route: "via office", Since: ctlT0.Add(9*time.Minute + 30*time.Second), Error: "ssh: handshake failed: EOF"},
			{Name: "home", State: state.WaitingForAuth, Server: "home.example:2222", Since: ctlT0.Add(5 * time.Minute)},
		},
		Flows: []state.Flow{
			{ID: 7, Src: "10.0.0.2:40000", Dst: "10.1.0.5:993", Name: "imap.corp", App: "/usr/bin/thunderbird", UID: 1000, Rule: `rule #1 "mail"`, Action: "tunnel", Profile: "office", Server: "gw.corp:22", Sent: 5, Received: 70000, Started: ctlT0, State: state.FlowOpen},
			{ID: 8, Src: "10.0.0.2:40001", Dst: "10.1.0.9:443", UID: -1, Action: "direct", Started: ctlT0.Add(9*time.Minute + 58*time.Second), State: state.FlowSettingUp},
		},
		Prompts: []state.Prompt{
			{ID: "p1", Profile: "home", Kind: state.PromptPassword, Message: "alice@home.example's password: ", Created: ctlT0.Add(5 * time.Minute)},
		},
	}
}

const ctlSampleTable = `capture: on

PROFILE            STATE             SERVER             ROUTE       CONNECTIONS  CHANNELS  SENT    RECEIVED  RECONNECTS  SINCE  ERROR
office             connected         gw.corp:22         direct      1            2         1000 B  64.0 MiB  1           10m0s  -
jump via db1.corp  backoff           db1.corp:22        via office  0            0         0 B     0 B       0           30s    ssh: handshake failed: EOF
home               waiting-for-auth  home.example:2222  -           0            0         0 B     0 B       0           5m0s   -

waiting for an answer (shunt auth PROFILE):
  home: password: alice@home.example's password:

ID  APP          UID   SOURCE          DESTINATION               RULE            ACTION  PROFILE  STATE  SENT  RECEIVED  AGE
7   thunderbird  1000  10.0.0.2:40000  imap.corp (10.1.0.5:993)  rule #1 "mail"  tunnel  office   open   5 B   68.4 KiB  10m0s
8   -            -     10.0.0.2:40001  10.1.0.9:443              -               direct  -        setup  0 B   0 B       2s
`

func TestCtlStatusTable(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	code, out, errOut := ctlRun(t, srv.Socket(), "status")
	if code != 0 || errOut != "" {
		t.Fatalf("status = %d, stderr %q", code, errOut)
	}
	if out != ctlSampleTable {
		t.Errorf("status:\n%s\nwant:\n%s", out, ctlSampleTable)
	}
	b.SetStatus(state.Status{})
	_, out, _ = ctlRun(t, srv.Socket(), "status")
	if want := "capture: off (shunt is starting, or stopping)\n\nno profiles\n\nno flows\n"; out != want {
		t.Errorf("empty status:\n%s\nwant:\n%s", out, want)
	}
}

// status --json is one object shaped as the contract says: every field it
// names is there, empty or not.
func TestCtlStatusJSON(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	code, out, errOut := ctlRun(t, srv.Socket(), "status", "--json")
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 1 {
		t.Fatalf("status --json = %d, stderr %q, stdout %q; want one line", code, errOut, out)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &top); err != nil {
		t.Fatal(err)
	}
	contract := map[string][]string{
		"profiles": {"name", "state", "server", "channels", "sent", "received", "reconnects", "error"},
		"flows":    {"id", "src", "dst", "name", "app", "uid", "rule", "action", "profile", "sent", "received", "started"},
		"prompts":  {"id", "profile", "kind", "message"},
	}
	for list, fields := range contract {
		var items []map[string]any
		if err := json.Unmarshal(top[list], &items); err != nil || len(items) == 0 {
			t.Fatalf("%s: %v, %s", list, err, top[list])
		}
		for i, item := range items {
			for _, f := range fields {
				if _, ok := item[f]; !ok {
					t.Errorf("%s[%d] has no %q: %v", list, i, f, item)
				}
			}
		}
	}
	// And the values are the daemon's.
	var st state.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || !reflect.DeepEqual(st, ctlSample()) {
		t.Errorf("status --json decodes as %+v, %v\nwant %+v", st, err, ctlSample())
	}
	for _, s := range []string{`"sent":5,"received":70000`, `"started":"2026-12-01T10:00:00Z"`, `"id":8,"src":"10.0.0.2:40001","dst":"10.1.0.9:443"`, `"name":"","app":"","uid":-1,"rule":"","action":"direct","profile":""`, `"error":""`} {
		if !strings.Contains(out, s) {
			t.Errorf("status --json has no %s: %s", s, out)
		}
	}
	// No daemon state: lists, not null.
	b.SetStatus(state.Status{})
	if _, out, _ := ctlRun(t, srv.Socket(), "status", "--json"); out != `{"capture":false,"profiles":[],"flows":[],"prompts":[]}`+"\n" {
		t.Errorf("empty status --json: %s", out)
	}
}

func TestCtlStatusWatch(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	for _, tc := range []struct {
		args     []string
		terminal bool
		frame    string // what each frame starts with
		between  string // what the output has where a frame ends and the next begins
	}{
		{[]string{"status", "--watch", "--interval", "1ms"}, false, "capture: on\n", "2s\n\ncapture: on\n"},
		{[]string{"status", "--watch", "--interval", "1ms"}, true, "\x1b[H\x1b[2Jcapture: on\n", "2s\n\x1b[H\x1b[2Jcapture: on\n"},
		{[]string{"status", "--watch", "--interval", "1ms", "--json"}, false, `{"capture":true,`, "}\n{\"capture\":true,"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		c, out, errOut := testCtl(ctx, srv.Socket(), "")
		c.outTerminal = tc.terminal
		done := make(chan int)
		go func() { done <- c.run(tc.args[0], tc.args[1:]) }()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(out.String(), tc.frame) < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 || errOut.String() != "" {
			t.Errorf("%q: %d, stderr %q", tc.args, code, errOut)
		}
		frames := strings.Count(out.String(), tc.frame)
		if frames < 3 || !strings.HasPrefix(out.String(), tc.frame) {
			t.Errorf("%q: %d frames:\n%q", tc.args, frames, out)
		}
		if !strings.Contains(out.String(), tc.between) {
			t.Errorf("%q: no %q between frames:\n%q", tc.args, tc.between, out)
		}
	}
	// A daemon that goes away ends the watch, with the error.
	c, out, errOut := testCtl(context.Background(), srv.Socket(), "")
	done := make(chan int)
	go func() { done <- c.run("status", []string{"--watch", "--interval", "1ms"}) }()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "capture") && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	srv.Close()
	if code := <-done; code != 1 || !strings.Contains(errOut.String(), "shunt status: shunt is not running") {
		t.Errorf("after the daemon went: %d, stderr %q", code, errOut)
	}
}

func TestCtlFlows(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	code, out, _ := ctlRun(t, srv.Socket(), "flows")
	want := ctlSampleTable[strings.Index(ctlSampleTable, "ID "):]
	if code != 0 || out != want {
		t.Errorf("flows = %d:\n%s\nwant:\n%s", code, out, want)
	}
	code, out, _ = ctlRun(t, srv.Socket(), "flows", "--json")
	var got struct{ Flows []map[string]any }
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Flows) != 2 || got.Flows[0]["id"] != 7.0 || got.Flows[1]["rule"] != "" {
		t.Errorf("flows --json = %d: %s (%v)", code, out, err)
	}
	b.SetStatus(state.Status{})
	if _, out, _ := ctlRun(t, srv.Socket(), "flows"); out != "no flows\n" {
		t.Errorf("no flows: %q", out)
	}
	if _, out, _ := ctlRun(t, srv.Socket(), "flows", "--json"); out != `{"flows":[]}`+"\n" {
		t.Errorf("no flows, --json: %q", out)
	}
}

// flows --follow prints the flows' open and close events, and nothing
// else, until shunt stops.
func TestCtlFlowsFollow(t *testing.T) {
	open := state.Event{Event: state.EventOpen, Time: ctlT0, Flow: &state.Flow{ID: 7, Src: "10.0.0.2:40000", Dst: "10.1.0.5:993", Name: "imap.corp", App: "/usr/bin/thunderbird", UID: 1000, Rule: `rule #1 "mail"`, Action: "tunnel", Profile: "office", Started: ctlT0, State: state.FlowOpen}}
	closed := state.Event{Event: state.EventClose, Time: ctlT0.Add(1500 * time.Millisecond), Flow: &state.Flow{ID: 8, Src: "10.0.0.2:40001", Dst: "10.1.0.9:443", UID: -1, Action: "direct", Sent: 2048, Received: 3 << 20, Started: ctlT0, State: state.FlowClosed}, Reason: "closed by the application", Duration: 1500 * time.Millisecond}
	others := []state.Event{
		{Event: state.EventState, Time: ctlT0, Profile: &state.Profile{Name: "office", State: state.Connected}},
		{Event: state.EventPrompt, Time: ctlT0, Prompt: &state.Prompt{ID: "p1", Profile: "home", Kind: state.PromptPassword}},
	}
	for _, tc := range []struct {
		json bool
		want string
	}{
		{false, `10:00:00 open  7 thunderbird (uid 1000) 10.0.0.2:40000 -> imap.corp (10.1.0.5:993): rule #1 "mail": tunnel via office` + "\n" +
			"10:00:01 close 8 - 10.0.0.2:40001 -> 10.1.0.9:443: direct; sent 2.0 KiB, received 3.0 MiB in 1.5s: closed by the application\n"},
		{true, `{"event":"open","time":"2026-12-01T10:00:00Z","id":7,"src":"10.0.0.2:40000","dst":"10.1.0.5:993","name":"imap.corp","app":"/usr/bin/thunderbird","uid":1000,"rule":"rule #1 \"mail\"","action":"tunnel","profile":"office","sent":0,"received":0,"started":"2026-12-01T10:00:00Z","state":"open"}` + "\n" +
			`{"event":"close","time":"2026-12-01T10:00:01.5Z","id":8,"src":"10.0.0.2:40001","dst":"10.1.0.9:443","name":"","app":"","uid":-1,"rule":"","action":"direct","profile":"","sent":2048,"received":3145728,"started":"2026-12-01T10:00:00Z","state":"closed","reason":"closed by the application","duration":1.5}` + "\n"},
	} {
		b, srv, _ := ctlDaemon(t)
		c, out, errOut := testCtl(context.Background(), srv.Socket(), "")
		args := []string{"--follow"}
		if tc.json {
			args = append(args, "--json")
		}
		done := make(chan int)
		go func() { done <- c.run("flows", args) }()
		for deadline := time.Now().Add(10 * time.Second); b.Subscribers() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("flows --follow did not subscribe")
			}
		}
		b.Publish(others[0])
		b.Publish(open)
		b.Publish(others[1])
		b.Publish(closed)
		b.Down() // shunt stops: the stream ends after the events sent
		if code := <-done; code != 0 {
			t.Errorf("json %v: flows --follow = %d, stderr %q", tc.json, code, errOut)
		}
		if out.String() != tc.want {
			t.Errorf("json %v: flows --follow:\n%s\nwant:\n%s", tc.json, out, tc.want)
		}
		if errOut.String() != "shunt flows: shunt stopped\n" {
			t.Errorf("stderr %q", errOut)
		}
	}
	// The event key is the contract's, each line an object with the
	// flow's fields at the top.
	line := strings.SplitN(func() string {
		b, srv, _ := ctlDaemon(t)
		c, out, _ := testCtl(context.Background(), srv.Socket(), "")
		done := make(chan int)
		go func() { done <- c.run("flows", []string{"--follow", "--json"}) }()
		for b.Subscribers() == 0 {
			time.Sleep(time.Millisecond)
		}
		b.Publish(closed)
		b.Down()
		<-done
		return out.String()
	}(), "\n", 2)[0]
	var obj map[string]any
	if err := json.Unmarshal([]byte(line), &obj); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"event", "id", "src", "dst", "name", "app", "uid", "rule", "action", "profile", "sent", "received", "started", "reason", "duration"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("a close line has no %q: %s", k, line)
		}
	}
}

func TestCtlReload(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	if code, out, errOut := ctlRun(t, srv.Socket(), "reload"); code != 0 || out != "shunt read its configuration again\n" || errOut != "" {
		t.Errorf("reload = %d, %q, %q", code, out, errOut)
	}
	if code, out, _ := ctlRun(t, srv.Socket(), "reload", "--json"); code != 0 || out != `{"reloaded":true}`+"\n" {
		t.Errorf("reload --json = %d, %q", code, out)
	}
	b.SetErrors(controltest.Errors{Reload: errors.Join(
		errors.New(`/etc/shunt/shunt.yaml:3: unknown key "hots" in profiles: did you mean "host"?`),
		errors.New(`/etc/shunt/shunt.yaml:5: rule #1: unknown profile "q": use one of p`))})
	code, out, errOut := ctlRun(t, srv.Socket(), "reload")
	want := "shunt reload: the configuration was refused, the old one stays in force:\n" +
		`/etc/shunt/shunt.yaml:3: unknown key "hots" in profiles: did you mean "host"?` + "\n" +
		`/etc/shunt/shunt.yaml:5: rule #1: unknown profile "q": use one of p` + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("refused reload = %d, stdout %q, stderr:\n%s\nwant:\n%s", code, out, errOut, want)
	}
	b.SetErrors(controltest.Errors{})
	if code, out, errOut := ctlRun(t, srv.Socket(), "reload", "--reset-removed"); code != 0 || out != "shunt read its configuration again\n" {
		t.Errorf("reload --reset-removed = %d, %q, %q", code, out, errOut)
	}
	if calls := b.Calls(); !slices.Equal(calls, []string{"reload", "reload", "reload", "reload reset_removed"}) {
		t.Errorf("calls %q", calls)
	}
}

func TestCtlDown(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	code, out, errOut := ctlRun(t, srv.Socket(), "down")
	if code != 0 || errOut != "" || out != "shunt is stopping: running flows get shutdown_grace to finish\nshunt has stopped\n" {
		t.Errorf("down = %d, %q, %q", code, out, errOut)
	}
	if b.Subscribers() != 0 || !slices.Equal(b.Calls(), []string{"down"}) {
		t.Errorf("calls %q, subscribers %d", b.Calls(), b.Subscribers())
	}

	// The wait ends when the daemon goes, however it goes: here its
	// control socket closes, its event streams still open.
	db := downOnly{&controltest.Backend{}, make(chan struct{})}
	srv, _ = ctlDaemonWith(t, db)
	c, outBuf, _ := testCtl(context.Background(), srv.Socket(), "")
	done := make(chan int)
	go func() { done <- c.run("down", []string{"--json"}) }()
	select {
	case <-db.downs:
	case <-time.After(10 * time.Second):
		t.Fatal("down did not ask")
	}
	select {
	case code := <-done:
		t.Fatalf("down returned (%d, %q) while shunt still ran", code, outBuf)
	default:
	}
	srv.Close()
	if code := <-done; code != 0 || outBuf.String() != `{"stopped":true}`+"\n" {
		t.Errorf("down --json = %d, %q", code, outBuf)
	}

	_, srv, _ = ctlDaemon(t)
	if code, out, _ := ctlRun(t, srv.Socket(), "down", "--no-wait"); code != 0 || out != "shunt is stopping: running flows get shutdown_grace to finish\n" {
		t.Errorf("down --no-wait = %d, %q", code, out)
	}
	_, srv, _ = ctlDaemon(t)
	if code, out, _ := ctlRun(t, srv.Socket(), "down", "--no-wait", "--json"); code != 0 || out != `{"stopping":true}`+"\n" {
		t.Errorf("down --no-wait --json = %d, %q", code, out)
	}
}

// downOnly is a backend whose Down only says it was called.
type downOnly struct {
	*controltest.Backend
	downs chan struct{}
}

func (d downOnly) Down() { close(d.downs) }

func TestCtlConnectDisconnect(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	if code, out, _ := ctlRun(t, srv.Socket(), "connect", "home"); code != 0 || out != "home: connected to home.example:2222\n" {
		t.Errorf("connect = %d, %q", code, out)
	}
	if code, out, _ := ctlRun(t, srv.Socket(), "disconnect", "office", "--json"); code != 0 ||
		!strings.HasPrefix(out, `{"name":"office","state":"idle","server":"gw.corp:22","route":"direct",`) || !strings.HasSuffix(out, `"error":""}`+"\n") {
		t.Errorf("disconnect --json = %d, %q", code, out)
	}
	if code, out, _ := ctlRun(t, srv.Socket(), "connect", "--json", "jump"); code != 0 || !strings.Contains(out, `"via":"db1.corp"`) {
		t.Errorf("connect --json jump = %d, %q", code, out)
	}
	if code, _, errOut := ctlRun(t, srv.Socket(), "connect", "nope"); code != 1 || errOut != `shunt connect: no profile "nope": use one of "office", "home"`+"\n" {
		t.Errorf("connect nope = %d, %q", code, errOut)
	}
	b.SetErrors(controltest.Errors{Connect: errors.New("ssh: handshake failed: EOF")})
	if code, _, errOut := ctlRun(t, srv.Socket(), "connect", "office"); code != 1 || errOut != `shunt connect: connecting profile "office": ssh: handshake failed: EOF`+"\n" {
		t.Errorf("failed connect = %d, %q", code, errOut)
	}
	for _, args := range [][]string{{"connect"}, {"disconnect", "a", "b"}} {
		if code, _, errOut := ctlRun(t, srv.Socket(), args...); code != 2 || !strings.HasPrefix(errOut, "usage: shunt "+args[0]+" PROFILE") {
			t.Errorf("%q = %d, %q", args, code, errOut)
		}
	}
	want := []string{"connect home", "disconnect office", "connect jump", "connect office"}
	if calls := b.Calls(); !slices.Equal(calls, want) {
		t.Errorf("calls %q, want %q", calls, want)
	}
}

func TestCtlClose(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	if code, out, _ := ctlRun(t, srv.Socket(), "close", "7"); code != 0 || out != "flow 7 reset\n" {
		t.Errorf("close 7 = %d, %q", code, out)
	}
	if code, out, _ := ctlRun(t, srv.Socket(), "close", "8", "--json"); code != 0 || out != `{"closed":8}`+"\n" {
		t.Errorf("close 8 --json = %d, %q", code, out)
	}
	if code, _, errOut := ctlRun(t, srv.Socket(), "close", "7"); code != 1 || errOut != "shunt close: no flow 7 (it may have ended already)\n" {
		t.Errorf("close 7 again = %d, %q", code, errOut)
	}
	if code, _, errOut := ctlRun(t, srv.Socket(), "close", "seven"); code != 2 || errOut != `shunt close: flow id "seven" is not a number: use an id that shunt flows shows`+"\n" {
		t.Errorf("close seven = %d, %q", code, errOut)
	}
	if calls := b.Calls(); !slices.Equal(calls, []string{"close 7", "close 8", "close 7"}) {
		t.Errorf("calls %q", calls)
	}
}

// A daemon that is not running is said so, in a line with the socket
// tried, by every command, which exits 1. The socket is --socket's, else
// SHUNT_SOCKET's, else the default.
func TestCtlNotRunning(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.sock")
	t.Setenv(control.SocketEnv, missing)
	for _, args := range [][]string{
		{"status"}, {"status", "--json"}, {"status", "--watch"}, {"flows"}, {"flows", "--follow"}, {"reload"}, {"down"}, {"down", "--no-wait"},
		{"connect", "office"}, {"disconnect", "office"}, {"close", "7"}, {"auth"}, {"auth", "--wait", "office"},
	} {
		var out, errOut bytes.Buffer
		code := run(args, &out, &errOut)
		want := "shunt " + args[0] + ": shunt is not running: there is no control socket at " + missing + " (to reach a shunt serving another one, give --socket PATH or set SHUNT_SOCKET)\n"
		if code != 1 || out.Len() != 0 || errOut.String() != want {
			t.Errorf("%q = %d, stdout %q, stderr:\n%s\nwant:\n%s", args, code, out.String(), errOut.String(), want)
		}
	}
	// --socket wins over the environment.
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(ctlSample())
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "--socket", srv.Socket(), "--json"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), `"office"`) {
		t.Errorf("status --socket = %d, %q", code, errOut.String())
	}
	t.Setenv(control.SocketEnv, srv.Socket())
	out.Reset()
	if code := run([]string{"flows"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "thunderbird") {
		t.Errorf("flows with SHUNT_SOCKET = %d, %q", code, errOut.String())
	}
	// Without either, the default (not dialled: a shunt may run here).
	c, _, _ := testCtl(context.Background(), "", "")
	if got := c.client(&ctlFlags{}).Socket; got != control.DefaultSocket {
		t.Errorf("with no socket named, the client uses %q", got)
	}
	if got := c.client(&ctlFlags{socket: "/x"}).Socket; got != "/x" {
		t.Errorf("with --socket /x, the client uses %q", got)
	}
}

func TestCtlUsage(t *testing.T) {
	for _, args := range [][]string{{"status", "extra"}, {"status", "--interval", "0", "--watch"}, {"flows", "x"}, {"reload", "x"}, {"down", "x"}, {"close"}, {"close", "1", "2"}, {"auth", "a", "b"}, {"status", "--nope"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "usage: shunt "+args[0]) {
			t.Errorf("%q = %d, %q", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "-h"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "-socket path") || !strings.Contains(out.String(), "-watch") {
		t.Errorf("status -h = %d, %q", code, out.String())
	}
	out.Reset()
	if run([]string{"help"}, &out, &errOut); !strings.Contains(out.String(), "shunt auth [--wait] [PROFILE]") {
		t.Errorf("help does not list the client commands:\n%s", out.String())
	}
}

func TestCtlAuth(t *testing.T) {
	const secret = "correct-horse-battery-staple"
	prompt := func(id, profile string, echo bool, created time.Duration) state.Prompt {
		return state.Prompt{ID: id, Profile: profile, Kind: state.PromptPassword, Message: profile + "'s password: ", Echo: echo, Created: ctlT0.Add(created)}
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	for _, tc := range []struct {
		name     string
		prompts  []state.Prompt
		args     []string
		stdin    string
		terminal bool // stdin is a terminal: the secret is typed without echo
		want     result
		answers  map[string]string
	}{
		{"the only one, from stdin", []state.Prompt{prompt("p1", "home", false, 0)}, nil, secret + "\n", false,
			result{0, "answered the password prompt of profile home\n", ""}, map[string]string{"p1": secret}},
		{"stdin without a line end, and CRLF", []state.Prompt{prompt("p1", "home", false, 0)}, []string{"home"}, secret + "\r\n", false,
			result{0, "answered the password prompt of profile home\n", ""}, map[string]string{"p1": secret}},
		{"--json", []state.Prompt{prompt("p1", "home", false, 0)}, []string{"--json"}, secret, false,
			result{0, `{"answered":"p1"}` + "\n", ""}, map[string]string{"p1": secret}},
		{"at the terminal, without echo", []state.Prompt{prompt("p1", "home", false, 0)}, nil, "", true,
			result{0, "answered the password prompt of profile home\n", "home: home's password: "}, map[string]string{"p1": secret}},
		{"the named profile's", []state.Prompt{prompt("p1", "home", false, 0), prompt("p2", "office", false, time.Second)}, []string{"office"}, secret + "\n", false,
			result{0, "answered the password prompt of profile office\n", ""}, map[string]string{"p2": secret}},
		{"the oldest of a profile's", []state.Prompt{prompt("p2", "office", false, time.Second), prompt("p1", "office", false, 0)}, nil, secret + "\n", false,
			result{0, "answered the password prompt of profile office\n", ""}, map[string]string{"p1": secret}},
		{"several profiles, no terminal", []state.Prompt{prompt("p1", "home", false, 0), prompt("p2", "office", false, time.Second)}, nil, secret + "\n", false,
			result{1, "", "shunt auth: prompts of several profiles are pending: name one (shunt auth PROFILE): home, office\n"}, nil},
		{"several profiles, chosen at the terminal", []state.Prompt{prompt("p1", "home", false, 0), prompt("p2", "office", true, time.Second)}, nil, "2\nalice\n", true,
			result{0, "answered the password prompt of profile office\n", "Prompts pending:\n  1) home: password: home's password:\n  2) office: password: office's password:\nWhich one (1-2)? office: office's password: "}, map[string]string{"p2": "alice"}},
		{"a bad choice", []state.Prompt{prompt("p1", "home", false, 0), prompt("p2", "office", false, time.Second)}, nil, "3\n", true,
			result{1, "", "Prompts pending:\n  1) home: password: home's password:\n  2) office: password: office's password:\nWhich one (1-2)? shunt auth: \"3\" is not one of 1 to 2\n"}, nil},
		{"none pending", nil, nil, secret + "\n", false,
			result{1, "", "shunt auth: no prompt is pending (shunt auth --wait waits for one)\n"}, nil},
		{"none of the profile's", []state.Prompt{prompt("p1", "home", false, 0)}, []string{"office"}, secret + "\n", false,
			result{1, "", "shunt auth: no prompt of profile \"office\" is pending (shunt auth --wait waits for one)\n"}, nil},
		{"nothing on stdin", []state.Prompt{prompt("p1", "home", false, 0)}, nil, "", false,
			result{1, "", "shunt auth: no answer on stdin: EOF\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, srv, logs := ctlDaemon(t)
			b.SetStatus(state.Status{Prompts: tc.prompts})
			c, out, errOut := testCtl(context.Background(), srv.Socket(), tc.stdin)
			if tc.terminal {
				c.readSecret = func() ([]byte, error) { return []byte(secret), nil }
			}
			code := c.run("auth", tc.args)
			if got := (result{code, out.String(), errOut.String()}); got != tc.want {
				t.Errorf("auth %q = %+v\nwant %+v", tc.args, got, tc.want)
			}
			for _, p := range tc.prompts {
				a, ok := b.AnswerFor(p.ID)
				if want, answered := tc.answers[p.ID]; ok != answered || a != want {
					t.Errorf("prompt %s got %q (%v), want %q (%v)", p.ID, a, ok, want, answered)
				}
			}
			for what, s := range map[string]string{"stdout": out.String(), "stderr": errOut.String(), "the daemon's log": logs.String()} {
				if strings.Contains(s, secret) {
					t.Errorf("the answer is in %s:\n%s", what, s)
				}
			}
		})
	}
}

// auth --wait waits for a prompt that is not pending yet.
func TestCtlAuthWait(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	b.SetStatus(state.Status{Prompts: []state.Prompt{{ID: "p0", Profile: "home", Kind: state.PromptPassword}}})
	c, out, errOut := testCtl(context.Background(), srv.Socket(), "s3cret\n")
	done := make(chan int)
	go func() { done <- c.run("auth", []string{"--wait", "office"}) }()
	for deadline := time.Now().Add(10 * time.Second); b.Subscribers() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("auth --wait did not subscribe")
		}
	}
	p := state.Prompt{ID: "p1", Profile: "office", Kind: state.PromptPassphrase, Message: "passphrase for ~/.ssh/id_ed25519: "}
	// Another profile's prompt is not the one waited for.
	b.Publish(state.Event{Event: state.EventPrompt, Prompt: &state.Prompt{ID: "p9", Profile: "home"}})
	b.SetStatus(state.Status{Prompts: []state.Prompt{{ID: "p0", Profile: "home"}, p}})
	b.Publish(state.Event{Event: state.EventPrompt, Prompt: &p})
	if code := <-done; code != 0 || out.String() != "answered the passphrase prompt of profile office\n" {
		t.Errorf("auth --wait = %d, %q, %q", code, out, errOut)
	}
	if a, _ := b.AnswerFor("p1"); a != "s3cret" {
		t.Errorf("answer %q", a)
	}
	if _, ok := b.AnswerFor("p0"); ok {
		t.Error("another profile's prompt was answered")
	}

	// A shunt that stops while auth waits.
	c, _, errOut = testCtl(context.Background(), srv.Socket(), "x\n")
	go func() { done <- c.run("auth", []string{"--wait", "nobody"}) }()
	for b.Subscribers() == 0 {
		time.Sleep(time.Millisecond)
	}
	b.Down()
	if code := <-done; code != 1 || errOut.String() != "shunt auth: shunt stopped before a prompt came: EOF\n" {
		t.Errorf("auth --wait, shunt stopping = %d, %q", code, errOut)
	}
}

func TestByteCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB", 1 << 62: "4194304.0 TiB"} {
		if got := byteCount(n); got != want {
			t.Errorf("byteCount(%d) = %q, want %q", n, got, want)
		}
	}
}
