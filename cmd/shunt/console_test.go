package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/console"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/state"
)

// socketClient talks HTTP to a Unix socket.
func socketClient(socket string) *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t *testing.T, hc *http.Client, url, cookie string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The console is served on the control socket at /console/ and at
// console.listen, with one token, which is gone once shunt stops.
func TestStartConsole(t *testing.T) {
	dir := t.TempDir()
	log := logrus.New()
	log.Out = io.Discard
	be := &served{Backend: &controltest.Backend{}}
	srv, err := control.NewServer(control.Options{Socket: filepath.Join(dir, "s"), Backend: be, Log: log})
	if err != nil {
		t.Skip(err) // no peer credentials here
	}
	defer srv.Close()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := netip.MustParseAddrPort(free.Addr().String())
	free.Close()
	cfg := &config.Config{StateDir: filepath.Join(dir, "state")}
	cfg.Console.Addr = addr
	stop, err := startConsole(cfg, srv, be, log)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(cfg.StateDir, console.TokenFile)
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	token, _ := console.ReadToken(cfg.StateDir)
	if st := be.Status(); st.Console == nil || st.Console.Listen != addr.String() || st.Console.TokenFile != tokFile {
		t.Errorf("status: console %+v", st.Console)
	}

	hc := socketClient(srv.Socket())
	if resp, _ := get(t, hc, "http://localhost/console/api/v1/status", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("socket, no session: %d", resp.StatusCode)
	}
	resp, _ := get(t, hc, "http://localhost/console/login?token="+token, "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "./" || len(resp.Cookies()) != 1 {
		t.Fatalf("socket login: %d %v", resp.StatusCode, resp.Header)
	}
	ck := resp.Cookies()[0]
	if resp, body := get(t, hc, "http://localhost/console/api/v1/status", ck.Name+"="+ck.Value); resp.StatusCode != 200 || !strings.Contains(body, `"capture"`) {
		t.Errorf("socket, with the session: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, hc, "http://localhost/console/", ck.Name+"="+ck.Value); resp.StatusCode != 200 || !strings.Contains(body, "shunt console") {
		t.Errorf("socket, the pages: %d %s", resp.StatusCode, body)
	}
	// The socket's own API is untouched.
	if resp, _ := get(t, hc, "http://shunt/v1/status", ""); resp.StatusCode != 200 {
		t.Errorf("socket /v1/status: %d", resp.StatusCode)
	}

	tc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := "http://" + addr.String()
	resp, _ = get(t, tc, base+"/login?token="+token, "")
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("TCP login: %d", resp.StatusCode)
	}
	ck = resp.Cookies()[0]
	if resp, _ := get(t, tc, base+"/api/v1/status", ck.Name+"="+ck.Value); resp.StatusCode != 200 {
		t.Errorf("TCP, with the session: %d", resp.StatusCode)
	}
	tc.CloseIdleConnections()
	stop()
	if _, err := os.Stat(tokFile); !os.IsNotExist(err) {
		t.Errorf("the token outlives the console: %v", err)
	}
	if be.Status().Console != nil {
		t.Error("a console in the status after stop")
	}
	if _, err := net.Dial("tcp", addr.String()); err == nil {
		t.Error("the console still listens")
	}
}

func TestConsoleCommand(t *testing.T) {
	b, srv, _ := ctlDaemon(t)
	dir := t.TempDir()
	tokFile := filepath.Join(dir, console.TokenFile)
	os.WriteFile(tokFile, []byte("the-token_0123\n"), 0o600)
	run := func(env map[string]string, args ...string) (int, string, string, []string) {
		t.Helper()
		c, out, errOut := testCtl(context.Background(), srv.Socket(), "")
		getenv := c.getenv
		c.getenv = func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return getenv(k)
		}
		var opened []string
		c.browse = func(u string) error { opened = append(opened, u); return nil }
		code := c.run("console", args)
		return code, out.String(), errOut.String(), opened
	}

	code, _, errOut, _ := run(nil)
	if code != 1 || !strings.Contains(errOut, "serves no web console") {
		t.Errorf("no console: %d %q", code, errOut)
	}
	b.SetStatus(state.Status{Console: &state.Console{TokenFile: tokFile}})
	code, _, errOut, _ = run(nil)
	if code != 1 || !strings.Contains(errOut, "only on its control socket") || !strings.Contains(errOut, "listen: 127.0.0.1:9560") {
		t.Errorf("socket only: %d %q", code, errOut)
	}

	b.SetStatus(state.Status{Console: &state.Console{Listen: "127.0.0.1:9560", TokenFile: tokFile}})
	const want = "http://127.0.0.1:9560/login?token=the-token_0123"
	code, out, errOut, opened := run(nil)
	if code != 0 || out != want+"\n" || len(opened) != 0 {
		t.Errorf("no display: %d %q %q, opened %v", code, out, errOut, opened)
	}
	if _, _, _, opened = run(map[string]string{"DISPLAY": ":0"}); len(opened) != 1 || opened[0] != want {
		t.Errorf("with a display: opened %v", opened)
	}
	if _, _, _, opened = run(map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, "--no-browser"); len(opened) != 0 {
		t.Errorf("--no-browser: opened %v", opened)
	}
	if code, out, _, _ = run(nil, "--json"); code != 0 || strings.TrimSpace(out) != `{"url":"`+want+`"}` && !strings.Contains(out, `"url": "`+want+`"`) {
		t.Errorf("--json: %d %q", code, out)
	}
	b.SetStatus(state.Status{Console: &state.Console{Listen: "[::]:9560", TokenFile: tokFile}})
	if _, out, _, _ = run(nil); out != "http://[::1]:9560/login?token=the-token_0123\n" {
		t.Errorf("wildcard: %q", out)
	}
	b.SetStatus(state.Status{Console: &state.Console{Listen: "127.0.0.1:9560", TokenFile: filepath.Join(dir, "gone")}})
	if code, _, errOut, _ = run(nil); code != 1 || !strings.Contains(errOut, "no console token") {
		t.Errorf("no token file: %d %q", code, errOut)
	}
}
