package control_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Whatever a page sends to check, the answer is JSON with a 2xx or 4xx
// status, and the file is left as it was.
func FuzzConfigCheck(f *testing.F) {
	for _, s := range []string{
		`{"rules":[{"keep":1},{"keep":0}]}`,
		`{"rules":[{"keep":0,"rule":{"name":"mail","ports":[993,"1-2"],"action":"direct"}}]}`,
		`{"rules":[{"rule":{"action":"tunnel","profile":"office","destinations":["*.x.example"],"users":["0"]}}]}`,
		`{"profile":{"name":"home","host":["a","b"],"port":2222},"old_name":"office"}`,
		`{"delete_profile":"office"}`,
		`{"rules":[],"version":"sha256:00"}`,
		`{"rules":[{"rule":{"name":{"a":[1,{"b":null}]}}}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		e := newEdit(t, "")
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/config/check", strings.NewReader(body)))
		if w.Code >= 500 || w.Code < 200 || w.Code == http.StatusNoContent {
			t.Fatalf("%q: %d %s", body, w.Code, w.Body)
		}
		if !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("%q: %s", body, w.Header())
		}
		if e.file(t) != e.userBefore {
			t.Fatalf("%q: a check wrote the file", body)
		}
	})
}
