package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
)

// editBackend is a fake shunt whose configuration is real files: its
// check is config.LoadLayers, its reload reads the files again.
type editBackend struct {
	*controltest.Backend
	layers config.Layers
	loaded atomic.Pointer[config.Loaded]
}

var _ control.ConfigEditor = (*editBackend)(nil)

func (b *editBackend) ConfigView() (any, error) { return b.loaded.Load().View() }

func (b *editBackend) ConfigFiles() (config.Layers, *config.Loaded) {
	return b.layers, b.loaded.Load()
}

func (b *editBackend) CheckConfig(l config.Layers) (*config.Loaded, []config.Shadowed, error) {
	loaded, err := config.LoadLayers(l)
	return loaded, nil, err
}

func (b *editBackend) Reload(ctx context.Context, opts control.ReloadOptions) error {
	if err := b.Backend.Reload(ctx, opts); err != nil {
		return err
	}
	l, err := config.LoadLayers(b.layers)
	if err != nil {
		return err
	}
	b.loaded.Store(l)
	return nil
}

// testMachine is a machine of the test's own: its home is dir, whatever
// runs the test.
func testMachine(dir string) config.Machine {
	env := map[string]string{"HOME": dir, "USER": "tester"}
	return config.Machine{
		Getenv: func(k string) string { return env[k] },
		CurrentUser: func() (*user.User, error) {
			return &user.User{Username: "tester", HomeDir: dir, Uid: strconv.Itoa(os.Geteuid())}, nil
		},
		LookupUser: func(name string) (*user.User, error) { return nil, user.UnknownUserError(name) },
	}
}

const userYAML = `# my shunt
profiles:
  - name: office   # the gateway
    host: gw.corp.example
    port: 22
    known_hosts: KNOWN
    host_key_policy: accept-new

rules:                # first match wins
  # mail, through the office
  - name: mail        # IMAP
    destinations: [10.1.0.0/16]
    ports: [993, "6000-6010"]   # and the odd ones
    action: tunnel
    profile: office
  # no cleartext POP3
  - name: pop
    ports: [110]
    action: block
# the end
`

type editFixture struct {
	b          *editBackend
	h          http.Handler
	dir        string
	global     string
	user       string
	userBefore string
}

// newEdit serves a fake backend on a user file with userYAML (and a global
// file with global, when not empty).
func newEdit(t *testing.T, global string) *editFixture {
	t.Helper()
	dir := t.TempDir()
	f := &editFixture{dir: dir, global: filepath.Join(dir, "global.yaml"), user: filepath.Join(dir, "user.yaml")}
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f.userBefore = strings.Replace(userYAML, "KNOWN", known, 1)
	if err := os.WriteFile(f.user, []byte(f.userBefore), 0o640); err != nil {
		t.Fatal(err)
	}
	if global != "" {
		if err := os.WriteFile(f.global, []byte(global), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	layers := config.Layers{Global: f.global, User: f.user, Options: config.Options{Machine: testMachine(dir)}}
	l, err := config.LoadLayers(layers)
	if err != nil {
		t.Fatal(err)
	}
	f.b = &editBackend{Backend: &controltest.Backend{}, layers: layers}
	f.b.loaded.Store(l)
	log := logrus.New()
	log.Out = &syncBuffer{}
	f.h = control.NewHandler(f.b, log)
	return f
}

func (f *editFixture) do(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, path, w.Code, w.Body)
	}
	return w.Code, out
}

func (f *editFixture) file(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(f.user)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (f *editFixture) version(t *testing.T) string {
	t.Helper()
	code, v := f.do(t, "GET", "/v1/config", "")
	if code != 200 || v["version"] == "" {
		t.Fatalf("GET /v1/config: %d %v", code, v)
	}
	return v["version"].(string)
}

// The rules moved, added to and edited: the file is the old one with
// only those changes, every comment and untouched rule byte for byte.
func TestSaveRules(t *testing.T) {
	mailRule := `  # mail, through the office
  - name: mail        # IMAP
    destinations: [10.1.0.0/16]
    ports: [993, "6000-6010"]   # and the odd ones
    action: tunnel
    profile: office
`
	popRule := `  # no cleartext POP3
  - name: pop
    ports: [110]
    action: block
`
	for _, c := range []struct {
		name, body string
		rules      string // the rules' part of the file after
	}{
		{"move", `{"rules":[{"keep":1},{"keep":0}]}`, popRule + mailRule},
		{"add", `{"rules":[{"keep":0},{"keep":1},{"rule":{"action":"direct","ports":[80,"8000-8080"],"name":"web","destinations":["any"]}}]}`,
			mailRule + popRule + "  - name: web\n    destinations: [any]\n    ports: [80, 8000-8080]\n    action: direct\n"},
		{"edit one field", `{"rules":[{"keep":0,"rule":{"name":"mail","destinations":["10.1.0.0/16"],"ports":[993,"6000-6010"],"action":"tunnel","profile":"office","on_tunnel_down":"direct"}},{"keep":1}]}`,
			mailRule + "    on_tunnel_down: direct\n" + popRule},
		{"delete", `{"rules":[{"keep":1}]}`, popRule},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newEdit(t, "")
			body := strings.Replace(c.body, "{", `{"version":"`+f.version(t)+`",`, 1)
			want := strings.Replace(f.userBefore, mailRule+popRule, c.rules, 1)

			code, res := f.do(t, "POST", "/v1/config/check", body)
			if code != 200 || res["ok"] != true || res["yaml"] != want || res["file"] != f.user {
				t.Fatalf("check: %d %v\nwant yaml:\n%s", code, res, want)
			}
			if f.file(t) != f.userBefore || len(f.b.Calls()) != 0 {
				t.Fatalf("a check wrote the file or reloaded: %q", f.b.Calls())
			}
			code, res = f.do(t, "PUT", "/v1/config/rules", body)
			if code != 200 || res["ok"] != true || res["saved"] != true {
				t.Fatalf("save: %d %v", code, res)
			}
			if got := f.file(t); got != want {
				t.Errorf("the file:\n%s\nwant:\n%s", got, want)
			}
			if c := f.b.Calls(); len(c) != 1 || c[0] != "reload" {
				t.Errorf("calls %q, want one reload", c)
			}
			if st, _ := os.Stat(f.user); st.Mode().Perm() != 0o640 {
				t.Errorf("mode %04o, want the file's 0640", st.Mode().Perm())
			}
			// The answer's version is the files' now: the next edit
			// can be made on it.
			if res["version"] != f.version(t) {
				t.Errorf("the save's version %v is not GET's", res["version"])
			}
		})
	}
}

// An invalid rule is refused with its file and line in the edited file,
// and nothing is written.
func TestSaveInvalidRule(t *testing.T) {
	f := newEdit(t, "")
	body := `{"rules":[{"keep":0},{"rule":{"name":"bad","destinations":["10.1.2"],"action":"tunnel","profile":"office"}},{"keep":1}]}`
	code, res := f.do(t, "POST", "/v1/config/check", body)
	if code != 200 || res["ok"] != false {
		t.Fatalf("check: %d %v", code, res)
	}
	errs := res["errors"].([]any)
	e := errs[0].(map[string]any)
	lines := strings.Split(res["yaml"].(string), "\n")
	line := int(e["line"].(float64))
	if e["file"] != f.user || line < 1 || !strings.Contains(lines[line-1], "10.1.2") || !strings.Contains(e["message"].(string), `destination "10.1.2"`) {
		t.Errorf("error %v, at line %q", e, lines[max(line-1, 0)])
	}
	code, res = f.do(t, "PUT", "/v1/config/rules", body)
	if code != http.StatusUnprocessableEntity || !strings.Contains(res["error"].(string), f.user+":"+strconv.Itoa(line)+":") {
		t.Errorf("save: %d %v", code, res)
	}
	if f.file(t) != f.userBefore || len(f.b.Calls()) != 0 {
		t.Errorf("a refused save wrote or reloaded: %q", f.b.Calls())
	}
}

// Where the global file owns the rules, neither a check nor a save of
// them is taken.
func TestSaveRulesOwnedByGlobal(t *testing.T) {
	f := newEdit(t, "rules:\n  - action: direct\n")
	_, v := f.do(t, "GET", "/v1/config", "")
	if r := v["rules"].(map[string]any); r["editable"] != false {
		t.Fatalf("rules %v", r)
	}
	for _, p := range []string{"POST /v1/config/check", "PUT /v1/config/rules"} {
		m, path, _ := strings.Cut(p, " ")
		code, res := f.do(t, m, path, `{"rules":[{"keep":0}]}`)
		if code != http.StatusForbidden || !strings.Contains(res["why_not"].(string), "the global file "+f.global+" owns the rules") {
			t.Errorf("%s: %d %v", p, code, res)
		}
	}
	if f.file(t) != f.userBefore {
		t.Error("the file was written")
	}
}

// An edit made on files that changed since is refused.
func TestSaveAfterAHandEdit(t *testing.T) {
	f := newEdit(t, "")
	v := f.version(t)
	edited := f.userBefore + "# a hand edit\n"
	os.WriteFile(f.user, []byte(edited), 0o640)
	code, res := f.do(t, "PUT", "/v1/config/rules", `{"version":"`+v+`","rules":[{"keep":1},{"keep":0}]}`)
	if code != http.StatusConflict || !strings.Contains(res["error"].(string), "changed since") || res["version"] == v {
		t.Errorf("save: %d %v", code, res)
	}
	if f.file(t) != edited {
		t.Error("the file was written")
	}
}

func TestSaveProfile(t *testing.T) {
	f := newEdit(t, "")
	known := filepath.Join(f.dir, "known_hosts")
	// One field changed: only its line is new.
	code, res := f.do(t, "PUT", "/v1/config/profiles/office", `{"name":"office","host":"gw.corp.example","port":2222,"known_hosts":"`+known+`","host_key_policy":"accept-new"}`)
	want := strings.Replace(f.userBefore, "    port: 22\n", "    port: 2222\n", 1)
	if code != 200 || f.file(t) != want {
		t.Fatalf("save: %d %v\nthe file:\n%s", code, res, f.file(t))
	}
	// A new one goes to the file of the rules, keys in the reference's
	// order.
	code, res = f.do(t, "PUT", "/v1/config/profiles/home", `{"known_hosts":["`+known+`"],"host_key_policy":"accept-new","host":["a.example","b.example"],"user":"me"}`)
	want = strings.Replace(want, "    host_key_policy: accept-new\n\n", "    host_key_policy: accept-new\n  - name: home\n    host: [a.example, b.example]\n    user: me\n    known_hosts: ["+known+"]\n    host_key_policy: accept-new\n\n", 1)
	if code != 200 || f.file(t) != want {
		t.Fatalf("add: %d %v\nthe file:\n%s\nwant:\n%s", code, res, f.file(t), want)
	}
	code, res = f.do(t, "DELETE", "/v1/config/profiles/home", `{}`)
	want = strings.Replace(f.userBefore, "    port: 22\n", "    port: 2222\n", 1)
	if code != 200 || f.file(t) != want {
		t.Fatalf("delete: %d %v\nthe file:\n%s", code, res, f.file(t))
	}
	// The rules name office: deleting it is refused, with the rule's
	// place.
	code, res = f.do(t, "DELETE", "/v1/config/profiles/office", `{}`)
	if code != http.StatusUnprocessableEntity || !strings.Contains(res["error"].(string), `unknown profile "office"`) {
		t.Errorf("deleting a profile in use: %d %v", code, res)
	}
	if code, res := f.do(t, "DELETE", "/v1/config/profiles/nosuch", `{}`); code != http.StatusNotFound {
		t.Errorf("deleting no profile: %d %v", code, res)
	}
	if f.file(t) != want {
		t.Error("a refused edit wrote the file")
	}
}

// Keys that are not the reference's, and secrets, are refused before
// anything is checked.
func TestEditBadKeys(t *testing.T) {
	f := newEdit(t, "")
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/v1/config/check", `{"rules":[{"rule":{"action":"direct","prots":[1]}}]}`, `rule #1: unknown key \"prots\": did you mean \"ports\"?`},
		{"POST", "/v1/config/check", `{"rules":[{}]}`, `rule #1: give {\"keep\": i}`},
		{"POST", "/v1/config/check", `{"rules":[{"keep":2}]}`, `keep 2 is not a rule of the file, which has 2`},
		{"POST", "/v1/config/check", `{"nosuch":1}`, `unknown field`},
		{"PUT", "/v1/config/profiles/x", `{"host":"h","password":"hunter2"}`, `a password never goes in the configuration file`},
		{"PUT", "/v1/config/profiles/x", `{"host":"h","proxy":"socks5://u:hunter2@p:1080"}`, `the proxy URL holds a password`},
		{"PUT", "/v1/config/rules", `{"rules":[{"keep":0}],"version":1}`, `the body must be`},
	} {
		code, res := f.do(t, c.method, c.path, c.body)
		b, _ := json.Marshal(res)
		if code != http.StatusBadRequest || !strings.Contains(string(b), c.want) {
			t.Errorf("%s %s %s: %d %s, want 400 with %s", c.method, c.path, c.body, code, b, c.want)
		}
		if strings.Contains(string(b), "hunter2") {
			t.Errorf("the answer repeats the secret: %s", b)
		}
	}
	if f.file(t) != f.userBefore {
		t.Error("the file was written")
	}
}

// A backend that does not edit answers 501.
func TestEditUnsupported(t *testing.T) {
	h := control.NewHandler(&controltest.Backend{}, logrus.New())
	for _, r := range []*http.Request{
		httptest.NewRequest("POST", "/v1/config/check", strings.NewReader(`{"rules":[]}`)),
		httptest.NewRequest("PUT", "/v1/config/rules", strings.NewReader(`{"rules":[]}`)),
		httptest.NewRequest("DELETE", "/v1/config/profiles/x", strings.NewReader(`{}`)),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusNotImplemented {
			t.Errorf("%s %s: %d %s", r.Method, r.URL.Path, w.Code, w.Body)
		}
	}
}

// A reload that refuses the saved file puts the old one back.
func TestSaveReloadRefused(t *testing.T) {
	f := newEdit(t, "")
	f.b.SetErrors(controltest.Errors{Reload: errors.New(f.user + ":3: something changed meanwhile")})
	code, res := f.do(t, "PUT", "/v1/config/rules", `{"rules":[{"keep":1},{"keep":0}]}`)
	if code != http.StatusUnprocessableEntity || res["saved"] != false || !strings.Contains(res["error"].(string), "the old one is back in place") {
		t.Errorf("save: %d %v", code, res)
	}
	if f.file(t) != f.userBefore {
		t.Errorf("the file:\n%s", f.file(t))
	}
}

// A file that is a symbolic link stays one: the file it names is
// replaced.
func TestSaveThroughSymlink(t *testing.T) {
	f := newEdit(t, "")
	real := filepath.Join(f.dir, "real.yaml")
	if err := os.Rename(f.user, real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, f.user); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	if code, res := f.do(t, "PUT", "/v1/config/rules", `{"rules":[{"keep":1},{"keep":0}]}`); code != 200 {
		t.Fatalf("save: %d %v", code, res)
	}
	if st, err := os.Lstat(f.user); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link is gone: %v %v", st, err)
	}
	if b, _ := os.ReadFile(real); !strings.HasPrefix(strings.SplitN(string(b), "rules:", 2)[1], "                # first match wins\n  # no cleartext POP3") {
		t.Errorf("the file:\n%s", b)
	}
	if m, _ := filepath.Glob(filepath.Join(f.dir, ".*shunt-*")); len(m) > 0 {
		t.Errorf("temporary files left: %q", m)
	}
}

// A proxy password in the file never reaches the page, and comes back
// from it as written; a new one is refused.
func TestProxyPasswordStaysInTheFile(t *testing.T) {
	f := newEdit(t, "")
	withProxy := strings.Replace(f.userBefore, "    port: 22\n", "    port: 22\n    proxy: socks5://u:hunter2@proxy.example:1080   # the proxy\n", 1)
	os.WriteFile(f.user, []byte(withProxy), 0o640)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest("GET", "/v1/config", nil))
	if strings.Contains(w.Body.String(), "hunter2") || !strings.Contains(w.Body.String(), `"proxy":"socks5://u:REDACTED@proxy.example:1080"`) {
		t.Fatalf("GET /v1/config: %s", w.Body)
	}
	var v struct {
		Profiles struct {
			Items []struct {
				Profile map[string]any `json:"profile"`
			} `json:"items"`
		} `json:"profiles"`
	}
	json.Unmarshal(w.Body.Bytes(), &v)
	p := v.Profiles.Items[0].Profile
	p["port"] = 2222
	body, _ := json.Marshal(p)
	code, res := f.do(t, "PUT", "/v1/config/profiles/office", string(body))
	if want := strings.Replace(withProxy, "    port: 22\n", "    port: 2222\n", 1); code != 200 || f.file(t) != want {
		t.Fatalf("save: %d %v\nthe file:\n%s", code, res, f.file(t))
	}
	if y := res["yaml"].(string); strings.Contains(y, "hunter2") || strings.Count(y, "\n") != strings.Count(withProxy, "\n") || !strings.Contains(y, "proxy: socks5://u:REDACTED@proxy.example:1080   # the proxy\n") {
		t.Errorf("the answer's yaml shows the password, or other lines: %s", y)
	}
	p["proxy"] = "socks5://u:other@proxy.example:1080"
	body, _ = json.Marshal(p)
	if code, res := f.do(t, "PUT", "/v1/config/profiles/office", string(body)); code != 400 {
		t.Errorf("a new password: %d %v", code, res)
	}
}

// A profile renamed (old_name, or a PUT whose body names another) is
// replaced in place.
func TestRenameProfile(t *testing.T) {
	f := newEdit(t, "")
	known := filepath.Join(f.dir, "known_hosts")
	p := `{"name":"office2","host":"gw.corp.example","port":22,"known_hosts":"` + known + `","host_key_policy":"accept-new"}`
	// The rules name office: renaming it alone is an error of theirs.
	code, res := f.do(t, "POST", "/v1/config/check", `{"profile":`+p+`,"old_name":"office"}`)
	if code != 200 || res["ok"] != false || !strings.Contains(fmt.Sprint(res["errors"]), `unknown profile "office": use one of office2`) {
		t.Fatalf("check: %d %v", code, res)
	}
	if y := res["yaml"].(string); y != strings.Replace(f.userBefore, "  - name: office   # the gateway\n", "  - name: office2  # the gateway\n", 1) {
		t.Errorf("yaml:\n%s", y)
	}
	if code, res := f.do(t, "POST", "/v1/config/check", `{"profile":`+p+`,"old_name":"nosuch"}`); code != http.StatusNotFound {
		t.Errorf("renaming no profile: %d %v", code, res)
	}
}

// Two saves made on the same version: one is written, the other refused.
func TestConcurrentSaves(t *testing.T) {
	f := newEdit(t, "")
	v := f.version(t)
	codes := make(chan int, 2)
	for _, rules := range []string{`[{"keep":1},{"keep":0}]`, `[{"keep":1}]`} {
		go func() {
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, httptest.NewRequest("PUT", "/v1/config/rules", strings.NewReader(`{"version":"`+v+`","rules":`+rules+`}`)))
			codes <- w.Code
		}()
	}
	a, b := <-codes, <-codes
	if min(a, b) != 200 || max(a, b) != http.StatusConflict {
		t.Errorf("statuses %d and %d, want 200 and 409", a, b)
	}
	if c := f.b.Calls(); len(c) != 1 {
		t.Errorf("calls %q, want one reload", c)
	}
}

// Where the global file owns the rules, profiles are still the user's to
// add and edit, but not the global file's.
func TestProfilesBesideGlobalRules(t *testing.T) {
	f := newEdit(t, "profiles:\n  - name: corp\n    host: corp.example\nrules:\n  - action: direct\n")
	known := filepath.Join(f.dir, "known_hosts")
	code, res := f.do(t, "PUT", "/v1/config/profiles/home", `{"host":"home.example","known_hosts":"`+known+`","host_key_policy":"accept-new"}`)
	if code != 200 || !strings.Contains(f.file(t), "  - name: home\n    host: home.example\n") {
		t.Errorf("add: %d %v\n%s", code, res, f.file(t))
	}
	code, res = f.do(t, "PUT", "/v1/config/profiles/corp", `{"host":"other.example"}`)
	if code != http.StatusForbidden || !strings.Contains(res["why_not"].(string), "the global file "+f.global+" holds the profile") {
		t.Errorf("a global profile: %d %v", code, res)
	}
}
