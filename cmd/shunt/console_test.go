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
	b := &controltest.Backend{}
	srv, err := control.NewServer(control.Options{Socket: filepath.Join(dir, "s"), Backend: b, Log: log})
	if err != nil {
		t.Skip(err) // no peer credentials here
	}
	defer srv.Close()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := netip.MustParseAddrPort(free.Addr().String())
	free.Close()
	cfg := &config.Config{StateDir: filepath.Join(dir, "state")}
	cfg.Console.Addr = addr
	stop, err := startConsole(cfg, srv, b, log)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(cfg.StateDir, console.TokenFile)
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	token, _ := console.ReadToken(cfg.StateDir)

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
	if _, err := net.Dial("tcp", addr.String()); err == nil {
		t.Error("the console still listens")
	}
}
