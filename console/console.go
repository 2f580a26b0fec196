// Package console serves shunt's web console: the pages (package
// console/web, embedded), a login with the token that `shunt console`
// prints, and the control API (package control) under api/, all behind
// the checks a browser needs and a Unix socket does not:
//
//   - every request needs the session cookie that /login?token= gives;
//   - the Host header must name the address served (DNS rebinding);
//   - POST, PUT and DELETE need an Origin equal to http://HOST (CSRF) and
//     a JSON body; GET and HEAD change nothing (the API takes each action
//     by one of those three methods only); no other method is served;
//   - no CORS; a Content-Security-Policy that allows only the console's
//     own files; the pages and the answers are never cached or framed;
//   - on a TCP address other than loopback, only the clients of
//     allow_from are served.
//
// The contract with the pages is /work/notes/CONSOLE-API.md.
package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// SessionCookie names the session cookie.
const SessionCookie = "shunt_session"

// Options configure a console.
type Options struct {
	// API is the control API's /v1 handler (control.Server.APIHandler):
	// requests for api/v1/... reach it as /v1/....
	API http.Handler
	// Pages are the console's files, index.html at the root (web.FS).
	Pages fs.FS
	// Token is the login token (NewToken), which /login exchanges for a
	// session.
	Token string
	// Listen is the TCP address served; the zero AddrPort serves the
	// control socket (under /console/ there), where any loopback Host is
	// taken (a browser reaches the socket only through a forward to a
	// loopback port, ssh -L).
	Listen netip.AddrPort
	// AllowFrom are the networks whose clients a non-loopback Listen
	// serves besides loopback ones.
	AllowFrom []netip.Prefix
	// Log gets a line for every refused request; nil: logrus's standard
	// logger.
	Log logrus.FieldLogger
}

// Console is the web console's handler.
type Console struct {
	o       Options
	session string // the cookie's value, new for each Console
	pages   http.Handler
}

// New makes the console's handler.
func New(o Options) (*Console, error) {
	if o.API == nil || o.Pages == nil {
		return nil, errors.New("console: no API or no pages")
	}
	if len(o.Token) < 32 {
		return nil, errors.New("console: the login token is too short")
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	if o.Listen.IsValid() && !o.Listen.Addr().IsLoopback() && len(o.AllowFrom) == 0 {
		return nil, fmt.Errorf("console: %s is not a loopback address, and no allow_from says whom to serve there", o.Listen)
	}
	session, err := NewToken()
	if err != nil {
		return nil, err
	}
	c := &Console{o: o, session: session}
	c.pages = http.HandlerFunc(c.servePage)
	return c, nil
}

// NewToken is a new random token: 32 bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("console: making a token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// securityHeaders go on every answer.
var securityHeaders = map[string]string{
	"Content-Security-Policy":      "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
	"X-Content-Type-Options":       "nosniff",
	"X-Frame-Options":              "DENY",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Cache-Control":                "no-store",
}

// ServeHTTP applies the checks, in order: the client's address, the Host,
// the method and Origin, the session; then serves /login, /api/ or a page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range securityHeaders {
		h.Set(k, v)
	}
	if err := c.clientAllowed(r.RemoteAddr); err != nil {
		c.refuse(w, r, http.StatusForbidden, err.Error())
		return
	}
	if !c.hostAllowed(r.Host) {
		c.refuse(w, r, http.StatusMisdirectedRequest, fmt.Sprintf("the Host %q is not the console's address: open the URL that shunt console prints", r.Host))
		return
	}
	// A browser that says so is never let in from another site.
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" {
		c.refuse(w, r, http.StatusForbidden, "a request from another site")
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut, http.MethodDelete:
		if o := r.Header.Get("Origin"); o != "http://"+r.Host {
			msg := "a " + r.Method + " without an Origin header"
			if o != "" {
				msg = fmt.Sprintf("a %s from the origin %q, not the console's", r.Method, o)
			}
			c.refuse(w, r, http.StatusForbidden, msg)
			return
		}
		// A form cannot send JSON (without CORS's preflight, which
		// nothing here answers).
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); r.ContentLength != 0 && mt != "application/json" {
			c.refuse(w, r, http.StatusUnsupportedMediaType, "the body must be JSON (Content-Type: application/json)")
			return
		}
	default:
		h.Set("Allow", "GET, HEAD, POST, PUT, DELETE")
		c.refuse(w, r, http.StatusMethodNotAllowed, r.Method+" is not served here")
		return
	}
	if r.URL.Path == "/login" {
		c.login(w, r)
		return
	}
	if !c.hasSession(r) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			writeError(w, http.StatusUnauthorized, "no session: open the URL that shunt console prints")
			return
		}
		loginPage(w, http.StatusUnauthorized)
		return
	}
	if api, ok := strings.CutPrefix(r.URL.Path, "/api"); ok && strings.HasPrefix(api, "/") {
		r2 := r.Clone(r.Context())
		r2.URL.Path = api
		r2.URL.RawPath = ""
		if rp, ok := strings.CutPrefix(r.URL.RawPath, "/api"); ok {
			r2.URL.RawPath = rp
		}
		c.o.API.ServeHTTP(w, r2)
		return
	}
	c.pages.ServeHTTP(w, r)
}

// refuse answers an error: JSON for the API, text otherwise, and logs it.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	c.o.Log.WithFields(logrus.Fields{"method": r.Method, "path": r.URL.Path, "client": r.RemoteAddr}).Warnf("web console: refused: %s", msg)
	writeError(w, code, msg)
}

// clientAllowed lets loopback clients in, and on a non-loopback address
// those of allow_from.
func (c *Console) clientAllowed(remote string) error {
	if !c.o.Listen.IsValid() {
		return nil // the control socket: its peer was let in already
	}
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return fmt.Errorf("the client's address %q is unknown", remote)
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return nil
	}
	for _, p := range c.o.AllowFrom {
		if p.Contains(a) {
			return nil
		}
	}
	return fmt.Errorf("client %s is not in console.allow_from", a)
}

// hostAllowed reports whether the Host header names the address served:
// the listen address itself, localhost:PORT for a loopback one, any
// address literal with the port for a wildcard one (0.0.0.0, ::; a name
// could be rebound to it by another site's DNS, an address cannot), and
// on the control socket any loopback host.
func (c *Console) hostAllowed(host string) bool {
	name, portStr, err := net.SplitHostPort(host)
	if err != nil {
		name, portStr = host, ""
	}
	name = strings.ToLower(strings.Trim(name, "[]"))
	addr, aerr := netip.ParseAddr(name)
	addr = addr.Unmap()
	if !c.o.Listen.IsValid() {
		return name == "localhost" || (aerr == nil && addr.IsLoopback())
	}
	if portStr != strconv.Itoa(int(c.o.Listen.Port())) {
		return false
	}
	la := c.o.Listen.Addr().Unmap()
	switch {
	case name == "localhost":
		return la.IsLoopback() || la.IsUnspecified()
	case aerr != nil || addr.Zone() != "":
		return false
	case la.IsUnspecified():
		return true
	}
	return addr == la
}

// login exchanges the token for a session cookie and goes to the pages.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	tok := r.URL.Query().Get("token")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(c.o.Token)) != 1 {
		c.o.Log.WithField("client", r.RemoteAddr).Warn("web console: refused: a login with a wrong token")
		loginPage(w, http.StatusForbidden)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: c.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	// Relative, as is (http.Redirect would make it absolute): "/" on
	// TCP, "/console/" on the control socket.
	w.Header().Set("Location", "./")
	w.WriteHeader(http.StatusSeeOther)
}

func (c *Console) hasSession(r *http.Request) bool {
	for _, ck := range r.CookiesNamed(SessionCookie) {
		if subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.session)) == 1 {
			return true
		}
	}
	return false
}

// servePage serves a file of the pages; a directory is index.html.
func (c *Console) servePage(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	if name == "" {
		name = "index.html"
	}
	f, err := c.o.Pages.Open(name)
	if err != nil {
		writeError(w, http.StatusNotFound, "no page "+r.URL.Path)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		writeError(w, http.StatusNotFound, "no page "+r.URL.Path)
		return
	}
	rs, ok := f.(io.ReadSeeker)
	if !ok {
		b, err := io.ReadAll(f)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "reading "+name)
			return
		}
		rs = strings.NewReader(string(b))
	}
	http.ServeContent(w, r, name, st.ModTime(), rs)
}

// loginPage says how to log in: no script, no style (the CSP allows
// neither inline).
func loginPage(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shunt console: log in</title></head>
<body><main><h1>shunt console</h1>
<p>Open the URL that <code>shunt console</code> prints: it logs you in.</p></main></body></html>
`)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
