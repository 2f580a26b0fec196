package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/state"
)

func TestAllow(t *testing.T) {
	member := access{self: 1000, group: "shunt", gid: 990}
	noGroup := access{self: 1000}
	asRoot := access{self: 0, group: "990", gid: 990}
	supplementary := func(gids ...uint32) func(Peer) []uint32 {
		return func(Peer) []uint32 { return gids }
	}
	noLookup := func(t *testing.T) func(Peer) []uint32 {
		return func(p Peer) []uint32 {
			t.Errorf("groups of %v looked up, but the answer does not depend on them", p)
			return nil
		}
	}
	for _, tc := range []struct {
		name   string
		access access
		peer   Peer
		groups func(*testing.T) func(Peer) []uint32
		want   string // "" when allowed, else part of the reason
	}{
		{"root", member, Peer{UID: 0, GID: 0}, noLookup, ""},
		{"the daemon's uid", member, Peer{UID: 1000, GID: 1000}, noLookup, ""},
		{"the daemon's uid, no group", noGroup, Peer{UID: 1000, GID: 5}, noLookup, ""},
		{"primary gid", member, Peer{UID: 1001, GID: 990}, noLookup, ""},
		{"supplementary gid", member, Peer{UID: 1001, GID: 1001}, func(*testing.T) func(Peer) []uint32 { return supplementary(4, 990, 27) }, ""},
		{"not a member", member, Peer{UID: 1001, GID: 1001, PID: 77}, func(*testing.T) func(Peer) []uint32 { return supplementary(4, 27) },
			"uid 1001, gid 1001, pid 77 may not use the control socket: it serves root, shunt's own user (uid 1000) and members of group shunt (gid 990) (control.group)"},
		{"groups unknown", member, Peer{UID: 1001, GID: 1001}, func(*testing.T) func(Peer) []uint32 { return supplementary() }, "may not use"},
		{"no group configured", noGroup, Peer{UID: 1001, GID: 990}, noLookup,
			"uid 1001, gid 990 may not use the control socket: it serves root, shunt's own user (uid 1000) (control.group is not set)"},
		{"root daemon, numeric group, not a member", asRoot, Peer{UID: 1001, GID: 1001}, func(*testing.T) func(Peer) []uint32 { return supplementary() },
			"it serves root and members of group 990 (control.group)"},
		{"root daemon, member", asRoot, Peer{UID: 1001, GID: 1001}, func(*testing.T) func(Peer) []uint32 { return supplementary(990) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.access.allow(tc.peer, tc.groups(t))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Error("allowed")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("reason %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestLookupGroup(t *testing.T) {
	if gid, err := lookupGroup("4242"); err != nil || gid != 4242 {
		t.Errorf("lookupGroup(4242) = %d, %v; a number is a gid", gid, err)
	}
	_, err := lookupGroup("shunt-no-such-group-x7")
	if err == nil || !strings.Contains(err.Error(), `control.group "shunt-no-such-group-x7"`) || !strings.Contains(err.Error(), "groupadd shunt-no-such-group-x7") {
		t.Errorf("unknown group: %v; want it named, with the fix", err)
	}
}

// nopBackend is a Backend with nothing in it.
type nopBackend struct{}

func (nopBackend) Status() state.Status                        { return state.Status{} }
func (nopBackend) Reload(context.Context, ReloadOptions) error { return nil }
func (nopBackend) Down()                                       {}
func (nopBackend) Connect(context.Context, string) error       { return nil }
func (nopBackend) Disconnect(string) error                     { return nil }
func (nopBackend) CloseFlow(uint64) bool                       { return false }
func (nopBackend) Answer(string, string) error                 { return nil }
func (nopBackend) Subscribe(int) (<-chan state.Event, func()) {
	ch := make(chan state.Event)
	close(ch)
	return ch, func() {}
}

// A peer that may not use the socket gets 403, with the reason, in JSON,
// and the log gets a line; the backend is not asked.
func TestRefusedPeer(t *testing.T) {
	var logBuf bytes.Buffer
	log := logrus.New()
	log.Out = &logBuf
	s := newServer(Options{Backend: nopBackend{}, Log: log}, access{self: 1000, group: "shunt", gid: 990}, func(Peer) []uint32 { return nil })
	for _, ca := range []*connAccess{
		{peer: Peer{UID: 1001, GID: 1001, PID: 4321}, err: s.access.allow(Peer{UID: 1001, GID: 1001, PID: 4321}, s.groups)},
		{err: errors.New("reading the peer's credentials (SO_PEERCRED): bad file descriptor")},
		nil, // no decision at all: refused too
	} {
		logBuf.Reset()
		r := httptest.NewRequest("POST", "/v1/down", nil)
		if ca != nil {
			r = r.WithContext(context.WithValue(r.Context(), accessKey{}, ca))
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		var body errorBody
		if w.Code != http.StatusForbidden || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Error == "" {
			t.Errorf("%+v: %d %s, want 403 with a JSON error", ca, w.Code, w.Body)
		}
		if ca != nil && ca.err != nil && body.Error != ca.err.Error() {
			t.Errorf("error %q, want %q", body.Error, ca.err)
		}
		if !strings.Contains(logBuf.String(), "level=warning") || !strings.Contains(logBuf.String(), "refused") || !strings.Contains(logBuf.String(), "/v1/down") {
			t.Errorf("log %q: want a warning that names the request", logBuf.String())
		}
	}
}

func TestParseFlowID(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "42": 42, "0042": 42, "18446744073709551615": 1<<64 - 1} {
		if got, err := ParseFlowID(in); err != nil || got != want {
			t.Errorf("ParseFlowID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "+1", "1e3", "0x10", "18446744073709551616", " 1", "1_000", "٣"} {
		if _, err := ParseFlowID(in); err == nil || !strings.Contains(err.Error(), "shunt flows") {
			t.Errorf("ParseFlowID(%q): %v; want an error that says where ids are", in, err)
		}
	}
}

func TestProblemLines(t *testing.T) {
	joined := errors.Join(errors.New("a.yaml:3: unknown key \"hots\""), errors.New("a.yaml:5: rule #1: unknown profile \"q\"\n"))
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{joined, []string{`a.yaml:3: unknown key "hots"`, `a.yaml:5: rule #1: unknown profile "q"`}},
		{errors.New("a.yaml:1: x\r\na.yaml:2: y\n\n"), []string{"a.yaml:1: x", "a.yaml:2: y"}},
		{errors.New(""), []string{"the configuration was refused, without a reason"}},
	} {
		if got := problemLines(tc.err); !slices.Equal(got, tc.want) {
			t.Errorf("problemLines(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestParseProfilePath(t *testing.T) {
	for _, tc := range []struct {
		path, name, verb string
		ok               bool
	}{
		{"/v1/profiles/office/connect", "office", "connect", true},
		{"/v1/profiles/office/disconnect", "office", "disconnect", true},
		{"/v1/profiles/%2F/connect", "/", "connect", true},
		{"/v1/profiles/a%2Fb/connect", "a/b", "connect", true},
		{"/v1/profiles/%2E%2E/connect", "..", "connect", true},
		{"/v1/profiles/50%25/connect", "50%", "connect", true},
		{"/v1/profiles/a b/connect", "a b", "connect", true},
		{"/v1/profiles/a/b/connect", "", "", false},
		{"/v1/profiles//connect", "", "", false},
		{"/v1/profiles/office/connect/", "", "", false},
		{"/v1/profiles/office/reboot", "", "", false},
		{"/v1/profiles/office", "", "", false},
		{"/v1/profiles/", "", "", false},
		{"/v1/profiles/%zz/connect", "", "", false},
		{"/v2/profiles/office/connect", "", "", false},
	} {
		name, verb, ok := parseProfilePath(tc.path)
		if name != tc.name || verb != tc.verb || ok != tc.ok {
			t.Errorf("parseProfilePath(%q) = %q, %q, %v; want %q, %q, %v", tc.path, name, verb, ok, tc.name, tc.verb, tc.ok)
		}
	}
}

// Whatever the path, a name read from it is what the client's escaping
// of that name gives back.
func FuzzParseProfilePath(f *testing.F) {
	for _, s := range []string{"/v1/profiles/office/connect", "/v1/profiles/%2F/disconnect", "/v1/profiles/a/b/connect", "/v1/profiles/%zz/connect"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		name, verb, ok := parseProfilePath(path)
		if !ok {
			if name != "" || verb != "" {
				t.Errorf("refused %q, with %q, %q", path, name, verb)
			}
			return
		}
		if verb != "connect" && verb != "disconnect" || name == "" {
			t.Errorf("parseProfilePath(%q) = %q, %q", path, name, verb)
		}
		back, verb2, ok := parseProfilePath("/v1/profiles/" + segment(name) + "/" + verb)
		if !ok || back != name || verb2 != verb {
			t.Errorf("%q: name %q escaped and read again is %q, %q, %v", path, name, back, verb2, ok)
		}
	})
}
