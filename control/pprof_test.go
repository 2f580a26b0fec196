package control

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
)

// The profiles go to root and the daemon's user only: a member of
// control.group, who may use the API, is refused them; without
// Options.Pprof there are none.
func TestPprofAccess(t *testing.T) {
	a := access{self: 1000, group: "shunt", gid: 990}
	groups := func(Peer) []uint32 { return nil }
	get := func(s *Server, p Peer, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		ca := &connAccess{peer: p, err: a.allow(p, groups)}
		r = r.WithContext(context.WithValue(r.Context(), accessKey{}, ca))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w
	}
	log := logrus.New()
	log.Out = &strings.Builder{}
	s := newServer(Options{Backend: nopBackend{}, Log: log, Pprof: true}, a, groups)
	for _, tc := range []struct {
		name string
		peer Peer
		code int
		want string
	}{
		{"root", Peer{UID: 0}, http.StatusOK, "goroutine"},
		{"the daemon's user", Peer{UID: 1000, GID: 1000}, http.StatusOK, "goroutine"},
		{"a member of control.group", Peer{UID: 1001, GID: 990, PID: 5}, http.StatusForbidden, "uid 1001, gid 990, pid 5 may not read the profiles (/debug/pprof/): they show shunt's memory; only root and shunt's own user (uid 1000) may"},
		{"an outsider", Peer{UID: 1002, GID: 1002}, http.StatusForbidden, "may not use the control socket"},
	} {
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1"} {
			w := get(s, tc.peer, path)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
				t.Errorf("%s, %s: %d %.200s; want %d with %q", tc.name, path, w.Code, w.Body, tc.code, tc.want)
			}
		}
	}
	off := newServer(Options{Backend: nopBackend{}, Log: log}, a, groups)
	if w := get(off, Peer{UID: 0}, "/debug/pprof/"); w.Code != http.StatusNotFound {
		t.Errorf("without Pprof: %d, want 404", w.Code)
	}
}
