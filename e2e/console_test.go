//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// consoleListen is the web console's address, on the client namespace's
// own loopback.
const consoleListen = "127.0.0.1:9560"

// consoleConfig is TestConsole's configuration: profile gw logs in with
// the key, pw by password only; its comments are what a save from the
// page must keep.
func consoleConfig(topo *topology, sd *sshd, user, socket, stateDir string) string {
	return fmt.Sprintf(`# shunt's web console, end to end: this comment stays through a save.
profiles:
  - name: gw
    host: %[1]s
    user: root
    identity_files: [%[2]s]
    known_hosts: %[3]s
  - name: pw   # logs in by password, asked in the page
    host: %[1]s
    user: %[4]s
    auth_methods: [password]
    known_hosts: %[3]s
rules:
  # The password port goes through pw.
  - name: by-password
    destinations: [172.31.2.0/24]
    ports: [%[5]d]
    action: tunnel
    profile: pw
  # Everything else of the internal network goes through gw.
  - name: internal   # the catch-all, last
    destinations: [172.31.2.0/24]
    action: tunnel
    profile: gw
tun:
  name: %[6]s
log:
  level: debug
control:
  socket: %[7]s
state_dir: %[8]s
console:
  listen: %[9]s   # the client namespace's loopback
`, gatewayAddr, sd.clientKey, sd.knownHosts, user, portPassword, topo.tunName(), socket, stateDir, consoleListen)
}

// TestConsole drives the web console in headless Chromium against a
// `shunt daemon` in the client namespace: log in with the URL that
// `shunt console` prints, watch flows live and close one, answer a
// password prompt, edit the rules and save them, and check that the
// console refuses what a browser on another site could send.
func TestConsole(t *testing.T) {
	prerequisites(t, "socat", "curl", "useradd", "chpasswd", chromium)
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	user, password := testUser(t)
	sd := startSSHDWith(t, topo.gateway, sshdOptions{
		listen: []string{gatewayAddr},
		extra:  []string{"Match User " + user, "  PasswordAuthentication yes", "Match all"},
	})
	svc := startServices(t, topo.internal)
	echoOn(t, topo.internal, net.JoinHostPort(internalAddr, fmt.Sprint(portPassword)))
	internal := func(port int) string { return net.JoinHostPort(internalAddr, fmt.Sprint(port)) }

	dir := t.TempDir()
	socket := filepath.Join(dir, "shunt.sock")
	stateDir := filepath.Join(dir, "state")
	path := filepath.Join(dir, "shunt.yaml")
	original := consoleConfig(topo, sd, user, socket, stateDir)
	if err := os.WriteFile(path, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	sh := startDaemon(t, topo, path, socket)
	waitLong(t, "the daemon's console and routes", func() bool {
		out, _ := topo.client.command("ip", "route", "show", "table", "21352").CombinedOutput()
		return strings.Contains(sh.log.String(), "web console: serving") && strings.Contains(string(out), "172.31.2.0/24")
	})

	var loginURL string
	t.Run("shunt console prints the login URL", func(t *testing.T) {
		token, err := os.ReadFile(filepath.Join(stateDir, "console.token"))
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(stateDir, "console.token")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the token file: %v, mode %v, want 0600", err, fi.Mode().Perm())
		}
		out, errOut, err := sh.ctl(topo, "", "console", "--no-browser")
		if err != nil {
			t.Fatalf("shunt console: %v\n%s%s", err, out, errOut)
		}
		loginURL = strings.TrimSpace(out)
		want := "http://" + consoleListen + "/login?token=" + url.QueryEscape(strings.TrimSpace(string(token)))
		if loginURL != want {
			t.Fatalf("shunt console printed %q, want %q", loginURL, want)
		}
		out, errOut, err = sh.ctl(topo, "", "console", "--json")
		var j struct{ URL string }
		if err != nil || json.Unmarshal([]byte(out), &j) != nil || j.URL != want {
			t.Errorf("shunt console --json: %v\n%s%s", err, out, errOut)
		}
	})
	if loginURL == "" {
		t.FailNow()
	}

	shots := artifactsDir(t, "console-e2e")
	b := startBrowser(t, topo.client)
	b.do(t, "viewport", chromedp.EmulateViewport(1280, 800))
	// show goes to a page by its navigation link, as a user does.
	show := func(t *testing.T, page string) {
		t.Helper()
		b.do(t, "open "+page,
			chromedp.Click(chromedp.CSS(`nav a[href="#`+page+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`section#`+page)),
		)
	}

	t.Run("log in, and the overview shows gw connected after a first flow", func(t *testing.T) {
		b.do(t, "log in",
			chromedp.Navigate(loginURL),
			chromedp.WaitVisible(chromedp.CSS(`#overview tr[data-profile="gw"]`)),
		)
		if loc := browserValue(t, b, "location", chromedp.Location()); loc != "http://"+consoleListen+"/" {
			t.Errorf("after the login the browser is at %s, want the console's root", loc)
		}
		echoCheck(t, topo.client, internal(portEcho), []byte("a first flow"))
		poll[bool](t, b, "gw connected", `!!document.querySelector('#overview tr[data-profile="gw"][data-state="connected"]')`)
		if got := eval[string](t, b, `document.querySelector('#capture-state').dataset.capture`); got != "on" {
			t.Errorf("the overview says capture %q, want on", got)
		}
		b.screenshot(t, shots, "overview")
	})

	t.Run("flows: a 64 MiB transfer grows and closes; the close button resets a flow", func(t *testing.T) {
		show(t, "flows")
		file := filepath.Join(t.TempDir(), "down.bin")
		// Slowed down, so that it is still running when the page is read.
		curl := topo.client.command("curl", "-sS", "--fail", "--limit-rate", "4M", "--max-time", "300", "-o", file, "http://"+internal(portDownload)+"/blob")
		curlOut := &syncBuffer{}
		curl.Stdout, curl.Stderr = curlOut, curlOut
		if err := curl.Start(); err != nil {
			t.Fatal(err)
		}
		curlDone := make(chan error, 1)
		go func() { curlDone <- curl.Wait() }()
		t.Cleanup(func() { curl.Process.Kill() })
		id := flowTo(t, sh, topo, internal(portDownload))
		row := fmt.Sprintf(`#flows tr[data-flow-id="%d"]`, id)
		received := func() float64 {
			t.Helper()
			s := poll[string](t, b, "the transfer's row", fmt.Sprintf(`(r => r && r.dataset.flowState !== "closed" && r.querySelector("td.received").textContent)(document.querySelector(%q))`, row))
			n, err := parseBytes(s)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		var first float64
		waitLong(t, "the transfer's row to count bytes", func() bool { first = received(); return first > 0 })
		var second float64
		waitLong(t, "the transfer's row to count more bytes", func() bool { second = received(); return second > first })
		t.Logf("the row's received bytes went from %.0f to %.0f", first, second)
		if second >= 64<<20 {
			t.Errorf("the second reading (%.0f) is the whole transfer: it was not read while it ran", second)
		}
		b.screenshot(t, shots, "flows")
		select {
		case err := <-curlDone:
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, curlOut)
			}
		case <-time.After(5 * time.Minute):
			t.Fatal("the transfer did not end")
		}
		if got := sha256File(t, file); got != svc.downloadSum {
			t.Fatalf("downloaded sha256 %x, served %x", got, svc.downloadSum)
		}
		poll[bool](t, b, "the transfer's row closed or gone", fmt.Sprintf(`(r => !r || r.dataset.flowState === "closed")(document.querySelector(%q))`, row))
		// The overview's totals follow the traffic without a state change.
		show(t, "overview")
		poll[bool](t, b, "gw's received total to pass 64 MiB", `Number(document.querySelector('#overview tr[data-profile="gw"]').dataset.received) >= 64 << 20`)
		b.screenshot(t, shots, "overview-traffic")
		show(t, "flows")

		// A flow held open by socat, closed with its button. socat
		// (1.7.4) takes a reset for the end of the stream, exits 0, and
		// says so only as a warning (-d).
		socat := topo.client.command("socat", "-d", "STDIO", "TCP:"+internal(portEcho))
		in, err := socat.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		out, err := socat.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		socatErr := &syncBuffer{}
		socat.Stderr = socatErr
		if err := socat.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { socat.Process.Kill() })
		io.WriteString(in, "held open\n")
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "held open\n" {
			t.Fatalf("socat's echo: %q, %v", line, err)
		}
		id = flowTo(t, sh, topo, internal(portEcho))
		row = fmt.Sprintf(`#flows tr[data-flow-id="%d"]`, id)
		b.do(t, "close the flow",
			chromedp.Click(chromedp.CSS(row+` button.close-flow`)),
			chromedp.WaitVisible(chromedp.CSS(row+`[data-flow-state="closed"]`)),
		)
		socatDone := make(chan error, 1)
		go func() { io.Copy(io.Discard, out); socatDone <- socat.Wait() }()
		select {
		case err := <-socatDone:
			if !strings.Contains(socatErr.String(), "Connection reset by peer") {
				t.Errorf("socat after the close button: %v, %q; want it to see a reset", err, socatErr)
			}
		case <-time.After(time.Minute):
			t.Fatal("socat did not notice its flow was closed")
		}
	})

	t.Run("a password prompt answered in the page", func(t *testing.T) {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c, err := topo.client.dial(ctx, internal(portPassword))
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			if _, err := io.WriteString(c, "after the password\n"); err != nil {
				done <- err
				return
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && got != "after the password\n" {
				err = fmt.Errorf("echo %q", got)
			}
			done <- err
		}()
		show(t, "prompts")
		form := `#prompts form[data-prompt-id]`
		b.do(t, "the prompt", chromedp.WaitVisible(chromedp.CSS(form+` input[name="answer"][type="password"]`)))
		if txt := browserValue(t, b, "the prompt's text", chromedp.Text(chromedp.CSS(`#prompts .prompt`))); !strings.Contains(txt, "pw") {
			t.Errorf("the prompt does not name profile pw: %q", txt)
		}
		b.screenshot(t, shots, "prompts")
		b.do(t, "answer",
			chromedp.SendKeys(chromedp.CSS(form+` input[name="answer"]`), password),
			chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
			chromedp.WaitNotPresent(chromedp.CSS(form)),
		)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("the flow that waited for the password: %v", err)
			}
		case <-time.After(3 * time.Minute):
			t.Fatal("the flow that waited for the password did not go through")
		}
		if !strings.Contains(sd.log.String(), "Accepted password for "+user) {
			t.Error("sshd did not log the password login")
		}
		if strings.Contains(sh.log.String(), password) {
			t.Error("the password is in shunt's log")
		}
		if eval[bool](t, b, fmt.Sprintf(`document.documentElement.outerHTML.includes(%q) || [...document.querySelectorAll("input")].some(i => i.value.includes(%[1]q))`, password)) {
			t.Error("the password is in the page after it was sent")
		}
		show(t, "overview")
		poll[bool](t, b, "pw connected", `!!document.querySelector('#overview tr[data-profile="pw"][data-state="connected"]')`)
	})

	t.Run("requests a browser on another site could send are refused", func(t *testing.T) {
		client := &http.Client{
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
					return topo.client.dial(ctx, addr)
				},
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       30 * time.Second,
		}
		base := "http://" + consoleListen
		send := func(method, path, host, origin string, session *http.Cookie) (int, string) {
			t.Helper()
			var body io.Reader
			if method != http.MethodGet {
				body = strings.NewReader(`{"destination":"172.31.2.2:80"}`)
			}
			req, err := http.NewRequest(method, base+path, body)
			if err != nil {
				t.Fatal(err)
			}
			if host != "" {
				req.Host = host
			}
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if session != nil {
				req.AddCookie(session)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		// A session, from the login URL.
		resp, err := client.Get(loginURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var session *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "shunt_session" {
				session = c
			}
		}
		if resp.StatusCode != http.StatusSeeOther || session == nil {
			t.Fatalf("the login URL answered %d with cookies %v", resp.StatusCode, resp.Cookies())
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
			t.Errorf("the session cookie %v is not HttpOnly and SameSite=Strict", session)
		}
		origin := "http://" + consoleListen
		for _, c := range []struct {
			what                       string
			method, path, host, origin string
			session                    *http.Cookie
			want                       []int
		}{
			{"with the session (control)", "GET", "/api/v1/status", "", "", session, []int{200}},
			{"a POST with the session and the console's Origin (control)", "POST", "/api/v1/explain", "", origin, session, []int{200}},
			{"without the session", "GET", "/api/v1/status", "", "", nil, []int{401}},
			{"a page without the session", "GET", "/", "", "", nil, []int{401}},
			{"a wrong token", "GET", "/login?token=wrong", "", "", nil, []int{403}},
			{"a foreign Host", "GET", "/api/v1/status", "evil.example:9560", "", session, []int{421, 403}},
			{"localhost's name with another port", "GET", "/api/v1/status", "localhost:9561", "", session, []int{421, 403}},
			{"a POST with a foreign Origin", "POST", "/api/v1/explain", "", "http://evil.example", session, []int{403}},
			{"a POST without Origin", "POST", "/api/v1/explain", "", "", session, []int{403}},
		} {
			code, body := send(c.method, c.path, c.host, c.origin, c.session)
			ok := false
			for _, w := range c.want {
				ok = ok || code == w
			}
			if !ok {
				t.Errorf("%s: %s %s answered %d, want %v: %.300s", c.what, c.method, c.path, code, c.want, body)
			}
		}
	})

	t.Run("profiles page", func(t *testing.T) {
		show(t, "profiles")
		b.do(t, "the profiles", chromedp.WaitVisible(chromedp.CSS(`#profiles tr[data-profile-name="pw"]`)))
		b.screenshot(t, shots, "profiles")
	})

	t.Run("rules: add one, move it up, save; the file and shunt explain agree", func(t *testing.T) {
		show(t, "rules")
		b.do(t, "the rules",
			chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="1"]`)),
		)
		b.screenshot(t, shots, "rules")
		// A rule that blocks the echo port, added at the end where the
		// catch-all shadows it, then moved above the catch-all.
		b.do(t, "add a rule",
			chromedp.Click(chromedp.ID("add-rule")),
			chromedp.WaitVisible(chromedp.CSS(`#rule-editor[open]`)),
			chromedp.SendKeys(chromedp.ID("rule-name"), "no-echo"),
			chromedp.SendKeys(chromedp.ID("rule-destinations"), "172.31.2.0/24"),
			chromedp.SendKeys(chromedp.ID("rule-ports"), fmt.Sprint(portEcho)),
			chromedp.SetValue(chromedp.ID("rule-action"), "block"),
			chromedp.Click(chromedp.CSS(`#rule-editor button[type="submit"]`)),
			chromedp.WaitNotPresent(chromedp.ID("rule-editor")),
			chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="2"].edited`)),
			chromedp.Click(chromedp.CSS(`#rules tr[data-rule-index="2"] button.move-up`)),
		)
		names := func() string {
			return eval[string](t, b, `[...document.querySelectorAll("#rules tr[data-rule-index] th")].map(th => th.firstChild.textContent.trim()).join(",")`)
		}
		if got := names(); got != "by-password,no-echo,internal" {
			t.Fatalf("the rules after the move: %s", got)
		}
		b.do(t, "save", chromedp.Click(chromedp.ID("save-rules")))
		// Saved, or an error the page shows (the save endpoint missing,
		// the check refusing): whichever comes first.
		outcome := poll[string](t, b, "the save's outcome", `document.getElementById("rules-status").textContent.includes("Saved") ? "saved" :
			[...document.querySelectorAll("#rules .error, #rules-problems .errors li")].map(e => e.textContent.trim()).filter(s => s).join("; ")`)
		if outcome != "saved" {
			t.Fatalf("the page did not save the rules: %s", outcome)
		}
		b.screenshot(t, shots, "rules-saved")
		if got := names(); got != "by-password,no-echo,internal" {
			t.Errorf("the rules after the save: %s", got)
		}

		saved, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// Every line of the file is still there, in order (comments
		// and all), and the new rule sits between the two others.
		rest := string(saved)
		for _, l := range strings.Split(strings.TrimSuffix(original, "\n"), "\n") {
			i := strings.Index(rest, l+"\n")
			if i < 0 {
				t.Errorf("the saved file lost (or moved) the line %q:\n%s", l, saved)
				break
			}
			rest = rest[i+len(l)+1:]
		}
		t.Logf("the saved file:\n%s", saved)
		pw, ne, in := strings.Index(string(saved), "name: by-password"), strings.Index(string(saved), "name: no-echo"), strings.Index(string(saved), "name: internal")
		if !(pw >= 0 && pw < ne && ne < in) {
			t.Errorf("the saved file does not have no-echo between by-password and internal:\n%s", saved)
		}

		// The page's explain box and shunt explain say the same.
		b.do(t, "explain",
			chromedp.SendKeys(chromedp.ID("explain-destination"), internal(portEcho)),
			chromedp.Click(chromedp.CSS(`#explain button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#explain-result .decision`)),
		)
		pageAction := eval[string](t, b, `document.querySelector("#explain-result .decision").dataset.action`)
		pageRule := eval[string](t, b, `(s => s ? s.textContent : "")(document.querySelector("#explain-result .decision strong"))`)
		b.screenshot(t, shots, "rules-explain")
		cmd := topo.client.command(shuntBin, "explain", "--global", "", "--user-config", "", "--config", path, "--json", internal(portEcho))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("shunt explain: %v\n%s", err, out)
		}
		var x struct {
			Decision struct{ Action, Rule string }
		}
		if err := json.Unmarshal(out, &x); err != nil {
			t.Fatalf("shunt explain --json: %v\n%s", err, out)
		}
		if x.Decision.Action != "block" || x.Decision.Rule != `#2 "no-echo"` {
			t.Errorf("shunt explain says %s by %q, want block by #2 \"no-echo\"", x.Decision.Action, x.Decision.Rule)
		}
		if pageAction != x.Decision.Action || pageRule != x.Decision.Rule {
			t.Errorf("the page explains %s by %q, shunt explain %s by %q", pageAction, pageRule, x.Decision.Action, x.Decision.Rule)
		}
		// And the running shunt took the saved rules.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := topo.client.dial(ctx, internal(portEcho)); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Errorf("a flow to the echo port after the save: %v, want refused by no-echo", err)
		}
	})

	for _, p := range b.problems() {
		if strings.Contains(p, "Content Security Policy") || strings.Contains(p, "exception") {
			t.Errorf("browser: %s", p)
		} else {
			t.Logf("browser: %s", p)
		}
	}
}

// flowTo is the id of the one open flow to dst, from shunt status.
func flowTo(t *testing.T, sh *shunt, topo *topology, dst string) uint64 {
	t.Helper()
	var id uint64
	waitLong(t, "a flow to "+dst+" in shunt status", func() bool {
		n := 0
		for _, f := range sh.status(t, topo).Flows {
			if f.Dst == dst {
				id = f.ID
				n++
			}
		}
		return n == 1
	})
	return id
}

// waitLong is waitFor with a deadline for slow steps (a shunt built
// with the race detector starting, a browser drawing).
func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
