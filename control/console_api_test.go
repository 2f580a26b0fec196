package control_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/state"
)

func TestExplainEndpoint(t *testing.T) {
	f := start(t)
	code, _, body := raw(t, f.socket, "POST", "/v1/explain", `{"destination":"10.1.0.7:993","user":"0"}`)
	if code != 200 || !strings.Contains(string(body), `"destination":"10.1.0.7:993"`) || f.b.LastCall() != "explain 10.1.0.7:993" {
		t.Errorf("explain: %d %s, call %q", code, body, f.b.LastCall())
	}
	for _, bad := range []string{``, `{}`, `{"destination":"a:1","nosuch":1}`, `[1]`} {
		if code, _, body := raw(t, f.socket, "POST", "/v1/explain", bad); code != 400 || !strings.Contains(string(body), `"error":`) {
			t.Errorf("body %q: %d %s, want 400 JSON", bad, code, body)
		}
	}
	if code, _, _ := raw(t, f.socket, "GET", "/v1/explain", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/explain: %d", code)
	}
	f.b.SetErrors(controltest.Errors{Explain: errors.New(`unknown user "nobody-here"`)})
	if code, _, body := raw(t, f.socket, "POST", "/v1/explain", `{"destination":"a:1","user":"nobody-here"}`); code != 400 || !strings.Contains(string(body), "unknown user") {
		t.Errorf("a failing explain: %d %s", code, body)
	}
}

func TestConfigEndpoint(t *testing.T) {
	f := start(t)
	f.b.SetConfig(map[string]any{"rules": map[string]any{"editable": false}})
	if code, _, body := raw(t, f.socket, "GET", "/v1/config", ""); code != 200 || strings.TrimSpace(string(body)) != `{"rules":{"editable":false}}` {
		t.Errorf("config: %d %s", code, body)
	}
	f.b.SetErrors(controltest.Errors{Config: errors.New("reading /x again: gone")})
	if code, _, body := raw(t, f.socket, "GET", "/v1/config", ""); code != 500 || !strings.Contains(string(body), "gone") {
		t.Errorf("a failing config: %d %s", code, body)
	}
}

// A backend without the optional methods answers 501.
func TestOptionalEndpoints(t *testing.T) {
	h := control.NewHandler(struct{ control.Backend }{&controltest.Backend{}}, logrus.New())
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/v1/explain", strings.NewReader(`{"destination":"a:1"}`)),
		httptest.NewRequest("GET", "/v1/config", nil),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNotImplemented || !strings.Contains(w.Body.String(), `"error":`) {
			t.Errorf("%s %s: %d %s", r.Method, r.URL.Path, w.Code, w.Body)
		}
	}
}

// With Accept: text/event-stream the events come as Server-Sent Events.
func TestEventsSSE(t *testing.T) {
	b := &controltest.Backend{}
	ts := httptest.NewServer(control.NewHandler(b, logrus.New()))
	defer ts.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/events", nil)
	req.Header.Set("Accept", "text/html, text/event-stream;q=0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	waitFor(t, "the subscription", func() bool { return b.Subscribers() == 1 })
	sent := []state.Event{
		{Event: state.EventBytes, Time: t0, Flows: []state.FlowBytes{{ID: 7, Sent: 10, Received: 20}}},
		{Event: state.EventState, Time: t0, Profile: &state.Profile{Name: "office", State: state.Connected}},
	}
	for _, ev := range sent {
		b.Publish(ev)
	}
	rd := bufio.NewReader(resp.Body)
	for i, want := range sent {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("message %d: %q is not a data line", i, line)
		}
		var got state.Event
		if err := json.Unmarshal([]byte(data), &got); err != nil || got.Event != want.Event {
			t.Errorf("message %d: %q (%v)", i, data, err)
		}
		if blank, _ := rd.ReadString('\n'); blank != "\n" {
			t.Errorf("message %d not ended by a blank line: %q", i, blank)
		}
	}
}
