package console

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "tok-0123456789abcdefghijklmnopqrstuvwxyz"

var pages = fstest.MapFS{
	"index.html":    {Data: []byte("<!doctype html><title>shunt</title><script src=\"app.js\"></script>")},
	"app.js":        {Data: []byte("fetch('api/v1/status')")},
	"css/style.css": {Data: []byte("body{}")},
}

type rig struct {
	b   *controltest.Backend
	c   *Console
	log *strings.Builder
}

func newRig(t *testing.T, listen string, allow ...string) *rig {
	t.Helper()
	b := &controltest.Backend{}
	b.SetStatus(state.Status{Flows: []state.Flow{{ID: 7, Dst: "10.1.0.7:993"}}, Prompts: []state.Prompt{{ID: "p1", Kind: state.PromptPassword}}})
	log := logrus.New()
	sb := &strings.Builder{}
	log.Out = sb
	o := Options{API: control.NewHandler(b, log), Pages: pages, Token: token, Log: log}
	if listen != "" {
		o.Listen = netip.MustParseAddrPort(listen)
	}
	for _, a := range allow {
		o.AllowFrom = append(o.AllowFrom, netip.MustParsePrefix(a))
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{b: b, c: c, log: sb}
}

// req is a request from a loopback client to 127.0.0.1:9560, with the
// session unless noSession.
type req struct {
	method, path, body string
	host, origin       string
	contentType        string
	remote             string
	noSession          bool
	header             map[string]string
}

func (r *rig) do(t *testing.T, q req) *httptest.ResponseRecorder {
	t.Helper()
	if q.method == "" {
		q.method = "GET"
	}
	hr := httptest.NewRequest(q.method, q.path, strings.NewReader(q.body))
	hr.Host = "127.0.0.1:9560"
	if q.host != "" {
		hr.Host = q.host
	}
	hr.RemoteAddr = "127.0.0.1:40000"
	if q.remote != "" {
		hr.RemoteAddr = q.remote
	}
	if q.method != "GET" && q.method != "HEAD" {
		hr.Header.Set("Origin", "http://"+hr.Host)
		hr.Header.Set("Content-Type", "application/json")
	}
	if q.origin != "" {
		hr.Header.Set("Origin", q.origin)
		if q.origin == "-" {
			hr.Header.Del("Origin")
		}
	}
	if q.contentType != "" {
		hr.Header.Set("Content-Type", q.contentType)
	}
	for k, v := range q.header {
		hr.Header.Set(k, v)
	}
	if !q.noSession {
		hr.AddCookie(&http.Cookie{Name: SessionCookie, Value: r.c.session})
	}
	w := httptest.NewRecorder()
	r.c.ServeHTTP(w, hr)
	if w.Header().Get("Content-Security-Policy") != securityHeaders["Content-Security-Policy"] || w.Header().Get("X-Frame-Options") != "DENY" {
		t.Errorf("%s %s: security headers missing: %v", q.method, q.path, w.Header())
	}
	for k := range w.Header() {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("%s %s: a CORS header %s", q.method, q.path, k)
		}
	}
	return w
}

func TestLogin(t *testing.T) {
	r := newRig(t, "127.0.0.1:9560")
	w := r.do(t, req{path: "/login?token=wrong", noSession: true})
	if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
		t.Errorf("a wrong token: %d, cookie %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	if w := r.do(t, req{path: "/login", noSession: true}); w.Code != http.StatusForbidden {
		t.Errorf("no token: %d", w.Code)
	}
	w = r.do(t, req{path: "/login?token=" + token, noSession: true})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "./" {
		t.Fatalf("the right token: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	ck := w.Result().Cookies()
	if len(ck) != 1 || ck[0].Name != SessionCookie || ck[0].Value != r.c.session || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/" {
		t.Fatalf("cookie %+v", ck)
	}
	if ck[0].Value == token {
		t.Error("the session is the token")
	}
	if strings.Contains(r.log.String(), "wrong") && strings.Contains(r.log.String(), "token=wrong") {
		t.Error("the log has the token tried")
	}
}

func TestNoSession(t *testing.T) {
	r := newRig(t, "127.0.0.1:9560")
	for _, p := range []string{"/", "/app.js", "/index.html"} {
		w := r.do(t, req{path: p, noSession: true})
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "shunt console") || strings.Contains(w.Body.String(), "fetch(") {
			t.Errorf("%s without a session: %d %q", p, w.Code, w.Body)
		}
	}
	w := r.do(t, req{path: "/api/v1/status", noSession: true})
	if w.Code != http.StatusUnauthorized || !strings.HasPrefix(w.Body.String(), `{"error":`) {
		t.Errorf("API without a session: %d %s", w.Code, w.Body)
	}
	hr := httptest.NewRequest("GET", "/api/v1/status", nil)
	hr.Host, hr.RemoteAddr = "127.0.0.1:9560", "127.0.0.1:1"
	hr.AddCookie(&http.Cookie{Name: SessionCookie, Value: token})
	w = httptest.NewRecorder()
	r.c.ServeHTTP(w, hr)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("the token as the session: %d", w.Code)
	}
	w = r.do(t, req{method: "POST", path: "/api/v1/flows/7/close", body: "{}", noSession: true})
	if w.Code != http.StatusUnauthorized || len(r.b.Calls()) != 0 {
		t.Errorf("POST without a session: %d, calls %v", w.Code, r.b.Calls())
	}
}

func TestPagesAndAPI(t *testing.T) {
	r := newRig(t, "127.0.0.1:9560")
	for _, tt := range []struct{ path, ctype, body string }{
		{"/", "text/html", "<title>shunt</title>"},
		{"/app.js", "javascript", "fetch("},
		{"/css/style.css", "text/css", "body{}"},
		{"/api/v1/status", "application/json", `"flows":[{"id":7`},
	} {
		w := r.do(t, req{path: tt.path})
		if w.Code != 200 || !strings.Contains(w.Header().Get("Content-Type"), tt.ctype) || !strings.Contains(w.Body.String(), tt.body) {
			t.Errorf("%s: %d %q %q", tt.path, w.Code, w.Header().Get("Content-Type"), w.Body)
		}
	}
	for _, p := range []string{"/css/", "/css", "/nosuch.js", "/api/debug/pprof/", "/api/console/", "/api"} {
		if w := r.do(t, req{path: p}); w.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, w.Code)
		}
	}
	w := r.do(t, req{method: "POST", path: "/api/v1/flows/7/close", body: "{}"})
	if w.Code != 200 || r.b.LastCall() != "close 7" {
		t.Errorf("POST close: %d %s, calls %v", w.Code, w.Body, r.b.Calls())
	}
	w = r.do(t, req{method: "POST", path: "/api/v1/explain", body: `{"destination":"10.1.0.7:993"}`})
	if w.Code != 200 || r.b.LastCall() != "explain 10.1.0.7:993" {
		t.Errorf("POST explain: %d %s", w.Code, w.Body)
	}
}

// A request whose Host is not the console's address is refused (DNS
// rebinding: another site's name pointed at 127.0.0.1).
func TestForeignHost(t *testing.T) {
	r := newRig(t, "127.0.0.1:9560")
	for _, h := range []string{"evil.example:9560", "127.0.0.1:9561", "127.0.0.2:9560", "127.0.0.1", "[::1]:9560", "localhost.evil.example:9560"} {
		w := r.do(t, req{path: "/api/v1/status", host: h})
		if w.Code != http.StatusMisdirectedRequest {
			t.Errorf("Host %q: %d", h, w.Code)
		}
		w = r.do(t, req{path: "/login?token=" + token, host: h, noSession: true})
		if w.Code != http.StatusMisdirectedRequest || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("login with Host %q: %d", h, w.Code)
		}
	}
	for _, h := range []string{"localhost:9560", "LOCALHOST:9560"} {
		if w := r.do(t, req{path: "/api/v1/status", host: h}); w.Code != 200 {
			t.Errorf("Host %q: %d", h, w.Code)
		}
	}
	// A wildcard address takes any address literal, no name but localhost.
	r = newRig(t, "0.0.0.0:9560", "192.168.50.0/24")
	for h, code := range map[string]int{"192.168.1.2:9560": 200, "[fd00::1]:9560": 200, "localhost:9560": 200, "shunt.lan:9560": 421, "192.168.1.2:80": 421} {
		if w := r.do(t, req{path: "/api/v1/status", host: h}); w.Code != code {
			t.Errorf("wildcard, Host %q: %d, want %d", h, w.Code, code)
		}
	}
	// On the control socket, any loopback host.
	r = newRig(t, "")
	for h, code := range map[string]int{"localhost:8080": 200, "127.0.0.1:1": 200, "[::1]:9": 200, "shunt": 421, "evil.example:8080": 421} {
		if w := r.do(t, req{path: "/api/v1/status", host: h}); w.Code != code {
			t.Errorf("socket, Host %q: %d, want %d", h, w.Code, code)
		}
	}
}

// State changes need the console's own Origin, a JSON body and POST, PUT
// or DELETE; a GET never changes anything.
func TestOriginAndMethods(t *testing.T) {
	r := newRig(t, "127.0.0.1:9560")
	for _, q := range []req{
		{method: "POST", path: "/api/v1/flows/7/close", body: "{}", origin: "http://evil.example"},
		{method: "POST", path: "/api/v1/flows/7/close", body: "{}", origin: "http://localhost:9560"},
		{method: "POST", path: "/api/v1/flows/7/close", body: "{}", origin: "https://127.0.0.1:9560"},
		{method: "POST", path: "/api/v1/flows/7/close", body: "{}", origin: "null"},
		{method: "POST", path: "/api/v1/flows/7/close", body: "{}", origin: "-"},
		{method: "DELETE", path: "/api/v1/flows/7/close", origin: "-"},
		{method: "POST", path: "/api/v1/prompts/p1/answer", body: `{"answer":"x"}`, header: map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		if w := r.do(t, q); w.Code != http.StatusForbidden {
			t.Errorf("%s %s, Origin %q: %d", q.method, q.path, q.origin, w.Code)
		}
	}
	// A form's body (text/plain, urlencoded) is refused.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		if w := r.do(t, req{method: "POST", path: "/api/v1/flows/7/close", body: "{}", contentType: ct}); w.Code != http.StatusUnsupportedMediaType {
			t.Errorf("POST %s: %d", ct, w.Code)
		}
	}
	// A GET of an action is refused by the API, and does nothing.
	for _, p := range []string{"/api/v1/flows/7/close", "/api/v1/profiles/office/connect", "/api/v1/reload", "/api/v1/down", "/api/v1/prompts/p1/answer?answer=x", "/api/v1/explain"} {
		for _, m := range []string{"GET", "HEAD"} {
			if w := r.do(t, req{method: m, path: p}); w.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d", m, p, w.Code)
			}
		}
	}
	for _, m := range []string{"OPTIONS", "PATCH", "TRACE", "CONNECT"} {
		if w := r.do(t, req{method: m, path: "/api/v1/flows/7/close"}); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d", m, w.Code)
		}
	}
	if c := r.b.Calls(); len(c) != 0 {
		t.Errorf("refused requests did %v", c)
	}
}

func TestAllowFrom(t *testing.T) {
	if _, err := New(Options{API: http.NotFoundHandler(), Pages: pages, Token: token, Listen: netip.MustParseAddrPort("0.0.0.0:9560")}); err == nil {
		t.Error("a wildcard listen without allow_from")
	}
	if _, err := New(Options{API: http.NotFoundHandler(), Pages: pages, Token: "short", Listen: netip.MustParseAddrPort("127.0.0.1:9560")}); err == nil {
		t.Error("a short token")
	}
	r := newRig(t, "0.0.0.0:9560", "192.168.50.0/24")
	for remote, code := range map[string]int{"192.168.50.7:4000": 200, "[::ffff:192.168.50.7]:4000": 200, "127.0.0.1:4000": 200, "10.0.0.1:4000": 403, "[fd00::1]:4000": 403} {
		if w := r.do(t, req{path: "/api/v1/status", host: "192.168.1.2:9560", remote: remote}); w.Code != code {
			t.Errorf("client %s: %d, want %d", remote, w.Code, code)
		}
	}
}

func TestToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ReadToken(dir); err == nil {
		t.Error("a token before any was written")
	}
	a, err := WriteToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v, %v", fi, err)
	}
	b, err := WriteToken(dir)
	if err != nil || a == b || len(b) != 43 {
		t.Fatalf("a second token %q (first %q): %v", b, a, err)
	}
	if got, err := ReadToken(dir); err != nil || got != b {
		t.Errorf("ReadToken = %q, %v; want %q", got, err, b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("state dir holds %d files", len(ents))
	}
	RemoveToken(dir)
	if _, err := ReadToken(dir); err == nil {
		t.Error("a token after RemoveToken")
	}
}

// A real server: log in, follow the redirect with the cookie, read the
// API and an event stream; Close ends the stream.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &controltest.Backend{}
	c, err := New(Options{API: control.NewHandler(b, logrus.New()), Pages: pages, Token: token, Listen: netip.MustParseAddrPort(ln.Addr().String())})
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(ln, c, logrus.New())
	base := "http://" + ln.Addr().String()
	jar := &cookieJar{}
	hc := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := hc.Get(base + "/login?token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<title>shunt</title>") {
		t.Fatalf("after login: %d %s", resp.StatusCode, body)
	}
	rq, _ := http.NewRequest("GET", base+"/api/v1/events", nil)
	rq.Header.Set("Accept", "text/event-stream")
	resp, err = hc.Do(rq)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %v %v", resp, err)
	}
	for b.Subscribers() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
}

// cookieJar keeps the cookies of one host, whatever the port.
type cookieJar struct{ cookies []*http.Cookie }

func (j *cookieJar) SetCookies(_ *url.URL, cs []*http.Cookie) { j.cookies = append(j.cookies, cs...) }
func (j *cookieJar) Cookies(*url.URL) []*http.Cookie          { return j.cookies }
