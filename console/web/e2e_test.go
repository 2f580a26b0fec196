package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shunt-dev/shunt/internal/testns"
)

// csp is the policy the console serves the pages with (CONSOLE-API.md).
const csp = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// needChromium finds Debian's chromium, or skips the test (fails it in
// CI, where a skip would hide that it never ran).
func needChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			testns.Need(t, "")
			return p
		}
	}
	lack := "needs chromium (on Debian: apt-get install chromium)"
	if os.Getenv("CI") != "" || os.Getenv(testns.RequiredEnv) != "" {
		t.Fatal(lack + "; CI or " + testns.RequiredEnv + " makes this a failure")
	}
	testns.Need(t, lack)
	return ""
}

// artifacts is where the screenshots go: the test's artifact directory
// (kept under go test's -outputdir with -artifacts, as CI runs it).
func artifacts(t *testing.T) string {
	t.Logf("screenshots in %s", t.ArtifactDir())
	return t.ArtifactDir()
}

// consoleServer serves the embedded pages and the fake API, with the
// console's CSP, under "/" and under "/console/" as the real console does.
func consoleServer(api *fakeAPI) *httptest.Server {
	site := http.NewServeMux()
	site.Handle("/api/", api)
	site.Handle("/", http.FileServerFS(FS))
	root := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if rest, ok := strings.CutPrefix(r.URL.Path, "/console/"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + rest
			site.ServeHTTP(w, r2)
			return
		}
		site.ServeHTTP(w, r)
	})
	return httptest.NewServer(root)
}

// TestPagesInChromium loads every page in headless Chromium at a
// desktop's and a phone's size, against the fake API: the stable hooks
// are there, nothing is logged as an error (a CSP violation would be),
// moving a rule down sends the new order, answering a prompt sends the
// answer and clears it, closing a flow closes it, and bytes events move
// the counts.
func TestPagesInChromium(t *testing.T) {
	exe := needChromium(t)
	out := artifacts(t)
	for _, vp := range []struct {
		name string
		w, h int64
		base string
	}{
		{"desktop", 1280, 800, "/"},
		{"phone", 390, 844, "/console/"},
	} {
		t.Run(vp.name, func(t *testing.T) {
			api := newFakeAPI()
			srv := consoleServer(api)
			defer srv.Close()
			defer api.close()

			ctx, cancelB := browser(t, exe)
			defer cancelB()
			emulate := chromedp.EmulateViewport(vp.w, vp.h)
			if vp.w < 500 {
				emulate = chromedp.EmulateViewport(vp.w, vp.h, chromedp.EmulateMobile, chromedp.EmulateScale(2))
			}
			run(t, ctx, "viewport", emulate)
			// Every console message, exception and browser log entry (a
			// CSP violation is one) of level warning or error is a problem.
			var problems []string
			messages := chromedp.Console(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for m, err := range messages {
					if err != nil {
						return
					}
					switch m.Type {
					case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
						// The one failed request the test causes: the
						// refused save.
						if m.Source == "network" && strings.Contains(m.Text, "422") && strings.HasSuffix(m.URL, "api/v1/config/rules") {
							continue
						}
						problems = append(problems, fmt.Sprintf("%s %s (%s:%d)", m, m.Source, m.URL, m.Line))
					}
				}
			}()
			checkConsole := func() {
				cancelB()
				<-done
				for _, p := range problems {
					t.Errorf("browser: %s", p)
				}
			}

			base := srv.URL + vp.base
			shot := func(page string) {
				png := get(t, ctx, "screenshot "+page, chromedp.FullScreenshot(100))
				name := filepath.Join(out, fmt.Sprintf("%s-%s.png", page, vp.name))
				if err := os.WriteFile(name, png, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("screenshot %s", name)
			}

			// Overview: profiles with their buttons, the pending prompts
			// on top, the navigation.
			run(t, ctx, "overview",
				chromedp.Navigate(base+"#overview"),
				chromedp.WaitVisible(chromedp.CSS(`#overview tr[data-profile="work"]`)),
				chromedp.WaitVisible(chromedp.CSS(`#overview form[data-prompt-id="p1"]`)),
			)
			for _, sel := range []string{`a[href="#overview"]`, `a[href="#rules"]`, `a[href="#profiles"]`, `a[href="#flows"]`, `a[href="#prompts"]`} {
				mustExist(t, ctx, sel)
			}
			mustButton(t, ctx, "#overview", "Connect")
			mustButton(t, ctx, "#overview", "Disconnect")
			shot("overview")

			// Rules: two rules, the second shadowed; move the first down
			// with the keyboard's focus following it, and save.
			run(t, ctx, "rules",
				chromedp.Navigate(base+"#rules"),
				chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="1"]`)),
				chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="1"] .shadow-warning`)),
			)
			for _, b := range []string{"Move up", "Move down", "Add rule", "Delete", "Check", "Save", "Explain"} {
				mustButton(t, ctx, "#rules", b)
			}
			run(t, ctx, "explain",
				chromedp.SendKeys(chromedp.CSS(`#explain-destination`), "git.example.com:443"),
				chromedp.Click(chromedp.CSS(`#explain button[type="submit"]`)),
				chromedp.WaitVisible(chromedp.CSS(`#explain-result .decision[data-action="tunnel"]`)),
			)
			shot("rules")
			run(t, ctx, "move down",
				chromedp.Click(chromedp.CSS(`#rules tr[data-rule-index="0"] button.move-down`)),
			)
			get(t, ctx, "moved", chromedp.Poll[bool](`document.querySelector('#rules tr[data-rule-index="0"] th').textContent.trim() === "web"`))
			// The focus follows the moved rule (a layout effect moves it).
			focusedIn := func(ctx context.Context, tg *chromedp.Target) (string, error) {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := chromedp.Poll[bool](`document.activeElement && document.activeElement.matches('#rules tr[data-rule-index="1"] button.move-up')`)(pctx, tg)
				if err != nil && ctx.Err() != nil {
					return "", err
				}
				return chromedp.Evaluate[string](`document.activeElement.closest("tr") ? document.activeElement.closest("tr").dataset.ruleIndex + " " + document.activeElement.textContent : "none"`)(ctx, tg)
			}
			focused := get(t, ctx, "focus", focusedIn)
			if focused != "1 Move up" {
				t.Errorf("after Move down, the focus is on %q, want the moved rule's (now row 1) Move up button", focused)
			}
			names := get(t, ctx, "names", chromedp.Evaluate[[]string](`[...document.querySelectorAll("#rules tr[data-rule-index] th")].map(th => th.firstChild.textContent.trim())`))
			if strings.Join(names, ",") != "web,work" {
				t.Errorf("rows after the move: %q, want web,work", names)
			}
			// With the keyboard: Enter on the focused Move up takes the
			// rule back up; the focus stays with it, on its Move down
			// (Move up is disabled at the top), and Enter moves it down.
			run(t, ctx, "keyboard up",
				chromedp.KeyEvent("\r"),
				void(chromedp.Poll[bool](`document.querySelector('#rules tr[data-rule-index="0"] th').textContent.trim() === "work"`)),
				void(chromedp.Poll[bool](`document.activeElement.matches('#rules tr[data-rule-index="0"] button.move-down')`)),
				chromedp.KeyEvent("\r"),
				void(chromedp.Poll[bool](`document.querySelector('#rules tr[data-rule-index="0"] th').textContent.trim() === "web"`)),
			)
			run(t, ctx, "save",
				chromedp.Click(chromedp.CSS(`#save-rules`)),
				chromedp.WaitVisible(chromedp.CSS(`#rules-status`)),
			)
			puts := waitRequests(t, api, "PUT", "config/rules")
			if got, want := compactJSON(t, puts[0].Body), `{"rules":[{"keep":1},{"keep":0}]}`; got != want {
				t.Errorf("PUT config/rules body %s, want %s", got, want)
			}
			if puts[0].Origin != srv.URL {
				t.Errorf("PUT config/rules Origin %q, want %q", puts[0].Origin, srv.URL)
			}

			// A new rule with an error: Check shows it with file:line,
			// Save is refused (422) and shows it too; deleting the rule
			// makes the list good again.
			run(t, ctx, "add rule",
				chromedp.Click(chromedp.ID("add-rule")),
				chromedp.WaitVisible(chromedp.CSS(`#rule-editor[open]`)),
				chromedp.SendKeys(chromedp.ID("rule-name"), "bad"),
				chromedp.SendKeys(chromedp.ID("rule-destinations"), "db.example.com, 10.1.0.0/16"),
				chromedp.SendKeys(chromedp.ID("rule-ports"), "5432, 6000-6010"),
				chromedp.Click(chromedp.CSS(`#rule-editor button[type="submit"]`)),
				chromedp.WaitNotPresent(chromedp.ID("rule-editor")),
				chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="2"].edited`)),
				chromedp.Click(chromedp.ID("check-rules")),
				chromedp.WaitVisible(chromedp.CSS(`#rules-problems .errors li`)),
			)
			problem := get(t, ctx, "problem", chromedp.Text(chromedp.CSS(`#rules-problems .errors li`)))
			if !strings.Contains(problem, "/home/alice/.config/shunt/shunt.yaml:31") {
				t.Errorf("the check's error %q does not name file:line", problem)
			}
			checks := waitRequests(t, api, "POST", "config/check")
			if got, want := compactJSON(t, checks[len(checks)-1].Body), `{"rules":[{"keep":0},{"keep":1},{"rule":{"action":"tunnel","destinations":["db.example.com","10.1.0.0/16"],"name":"bad","ports":[5432,"6000-6010"]}}]}`; got != want {
				t.Errorf("check body %s, want %s", got, want)
			}
			shot("rules-error")
			run(t, ctx, "save refused",
				chromedp.Click(chromedp.ID("save-rules")),
				void(chromedp.Poll[bool](`document.getElementById("rules-status").textContent.includes("Not saved")`)),
				chromedp.WaitVisible(chromedp.CSS(`#rules-problems .errors li`)),
				chromedp.Click(chromedp.CSS(`#rules tr[data-rule-index="2"] button.delete`)),
				chromedp.WaitNotPresent(chromedp.CSS(`#rules tr[data-rule-index="2"]`)),
			)
			if n := len(api.recorded("PUT", "config/rules")); n != 2 {
				t.Errorf("%d PUTs of the rules, want 2", n)
			}

			// Profiles: the table, an existing profile in the form, and
			// the add form's PUT.
			run(t, ctx, "profiles",
				chromedp.Navigate(base+"#profiles"),
				chromedp.WaitVisible(chromedp.CSS(`#profiles tr[data-profile-name="lab"]`)),
			)
			shot("profiles")
			run(t, ctx, "edit profile",
				chromedp.Click(chromedp.CSS(`#profiles tr[data-profile-name="lab"] button`)),
				chromedp.WaitVisible(chromedp.CSS(`#profile-editor[open]`)),
			)
			if got := get(t, ctx, "lab's hosts", chromedp.Value(chromedp.ID("profile-host"))); got != "lab.example.com\nlab2.example.com" {
				t.Errorf("lab's host field %q", got)
			}
			if got := get(t, ctx, "lab's policy", chromedp.Value(chromedp.ID("profile-host_key_policy"))); got != "ask" {
				t.Errorf("lab's host-key policy field %q, want ask", got)
			}
			run(t, ctx, "cancel edit",
				chromedp.Click(chromedp.CSS(`#profile-editor button.icon`)),
				chromedp.WaitNotPresent(chromedp.ID("profile-editor")),
			)
			run(t, ctx, "add profile",
				chromedp.Click(chromedp.CSS(`#add-profile`)),
				chromedp.WaitVisible(chromedp.CSS(`#profile-editor`)),
				chromedp.SendKeys(chromedp.CSS(`#profile-name`), "db"),
				chromedp.SendKeys(chromedp.CSS(`#profile-host`), "db.example.com"),
				chromedp.SendKeys(chromedp.CSS(`#profile-port`), "2222"),
				chromedp.SendKeys(chromedp.CSS(`#profile-user`), "alice"),
				chromedp.SetValue(chromedp.CSS(`#profile-host_key_policy`), "accept-new"),
				chromedp.SendKeys(chromedp.CSS(`#profile-connections`), "2"),
			)
			shot("profile-editor")
			run(t, ctx, "save profile", chromedp.Click(chromedp.CSS(`#profile-editor button[type="submit"]`)),
				chromedp.WaitNotPresent(chromedp.CSS(`#profile-editor`)))
			pp := waitRequests(t, api, "PUT", "config/profiles/db")
			if got, want := compactJSON(t, pp[0].Body), `{"connections":2,"host":"db.example.com","host_key_policy":"accept-new","name":"db","port":2222,"user":"alice"}`; got != want {
				t.Errorf("PUT config/profiles/db body %s, want %s", got, want)
			}

			// Flows: live counts from bytes events, a flow opening, one
			// closed with its button.
			run(t, ctx, "flows",
				chromedp.Navigate(base+"#flows"),
				chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-flow-id="2"] button.close-flow`)),
			)
			before := get(t, ctx, "sent", chromedp.Text(chromedp.CSS(`#flows tr[data-flow-id="1"] td.sent`)))
			api.openFlow(3)
			run(t, ctx, "open event", chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-flow-id="3"]`)))
			get(t, ctx, "bytes events", chromedp.Poll[bool](fmt.Sprintf(`document.querySelector('#flows tr[data-flow-id="1"] td.sent').textContent !== %q`, before)))
			count := get(t, ctx, "count", chromedp.Text(chromedp.ID("flow-count")))
			if !strings.Contains(count, "3 open flows") {
				t.Errorf("flow count %q, want 3 open flows", count)
			}
			shot("flows")
			run(t, ctx, "filter",
				chromedp.SendKeys(chromedp.ID("flow-filter"), "curl"),
				chromedp.WaitNotPresent(chromedp.CSS(`#flows tr[data-flow-id="1"]`)),
				chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-flow-id="2"]`)),
				chromedp.SendKeys(chromedp.ID("flow-filter"), "\b\b\b\b"), // Backspace
				chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-flow-id="1"]`)),
			)
			run(t, ctx, "close flow",
				chromedp.Click(chromedp.CSS(`#flows tr[data-flow-id="2"] button.close-flow`)),
				chromedp.WaitVisible(chromedp.CSS(`#flows tr[data-flow-id="2"][data-flow-state="closed"]`)),
			)
			waitRequests(t, api, "POST", "flows/2/close")

			// Prompts: the password is sent and cleared; the host-key
			// dialog shows the fingerprint and the line, and rejects.
			run(t, ctx, "prompts",
				chromedp.Navigate(base+"#prompts"),
				chromedp.WaitVisible(chromedp.CSS(`#prompts form[data-prompt-id="p1"] input[name="answer"][type="password"]`)),
				chromedp.Click(chromedp.CSS(`#prompts [data-prompt-kind="host-key"] button`)),
				chromedp.WaitVisible(chromedp.CSS(`dialog[open] form[data-prompt-id="p2"]`)),
			)
			dialog := get(t, ctx, "host-key dialog", chromedp.Text(chromedp.CSS(`dialog[open]`)))
			inDialog := get(t, ctx, "dialog focus", chromedp.Evaluate[string](`document.activeElement.closest("dialog") ? "yes" : "no"`))
			for _, want := range []string{"SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8", "lab.example.com ssh-ed25519 AAAA", "/home/alice/.ssh/known_hosts"} {
				if !strings.Contains(dialog, want) {
					t.Errorf("host-key dialog lacks %q: %q", want, dialog)
				}
			}
			if inDialog != "yes" {
				t.Error("the host-key dialog did not take the focus")
			}
			shot("prompts")
			run(t, ctx, "reject host key",
				chromedp.Click(chromedp.CSS(`dialog[open] button[value="no"]`)),
				chromedp.WaitNotPresent(chromedp.CSS(`[data-prompt-id="p2"]`)),
			)
			hk := waitRequests(t, api, "POST", "prompts/p2/answer")
			if got := compactJSON(t, hk[0].Body); got != `{"answer":"no"}` {
				t.Errorf("host-key answer %s, want no", got)
			}
			run(t, ctx, "answer",
				chromedp.SendKeys(chromedp.CSS(`#prompts form[data-prompt-id="p1"] input[name="answer"]`), "s3cret pass"),
				chromedp.Click(chromedp.CSS(`#prompts form[data-prompt-id="p1"] button[type="submit"]`)),
				chromedp.WaitNotPresent(chromedp.CSS(`[data-prompt-id="p1"]`)),
			)
			ans := waitRequests(t, api, "POST", "prompts/p1/answer")
			if got := compactJSON(t, ans[0].Body); got != `{"answer":"s3cret pass"}` {
				t.Errorf("password answer %s", got)
			}
			leak := get(t, ctx, "no leak", chromedp.Evaluate[bool](`document.documentElement.outerHTML.includes("s3cret") || [...document.querySelectorAll("input")].some(i => i.value.includes("s3cret"))`))
			if leak {
				t.Error("the password is still in the page after it was sent")
			}

			checkConsole()
		})
	}
}

// run runs the steps, and fails the test with the page's main element
// when one fails.
// TestRulesReadOnly: where the global file owns the rules, the page says
// so and offers no edit.
func TestRulesReadOnly(t *testing.T) {
	exe := needChromium(t)
	api := newFakeAPI()
	api.readOnly = true
	srv := consoleServer(api)
	defer srv.Close()
	defer api.close()
	ctx, cancel := browser(t, exe)
	defer cancel()
	run(t, ctx, "rules",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(srv.URL+"/#rules"),
		chromedp.WaitVisible(chromedp.CSS(`#rules tr[data-rule-index="1"]`)),
		chromedp.WaitVisible(chromedp.ID("rules-readonly")),
	)
	if got := get(t, ctx, "why not", chromedp.Text(chromedp.ID("rules-readonly"))); !strings.Contains(got, "the global file /etc/shunt/shunt.yaml owns the rules") {
		t.Errorf("read-only note %q", got)
	}
	for _, b := range []string{"Move up", "Move down", "Add rule", "Delete", "Save", "Check", "Edit"} {
		if get(t, ctx, "button "+b, chromedp.Evaluate[bool](fmt.Sprintf(`[...document.querySelectorAll("#rules button")].some(b => b.textContent.trim() === %q)`, b))) {
			t.Errorf("a read-only rules page offers %q", b)
		}
	}
	mustButton(t, ctx, "#rules", "Explain")
}

// browser starts a headless Chromium for a test.
func browser(t *testing.T, exe string) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // the test may run as root, in a container
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	// The first Run starts the browser, which then lives as long as ctx
	// (not as long as the first Run's context): no timeout on this one.
	if err := chromedp.Do(ctx); err != nil {
		cancelB()
		cancelA()
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx, func() {
		cancelB()
		cancelA()
	}
}

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	get(t, ctx, what, chromedp.Steps(steps...))
}

// void drops an action's value, to run it among steps.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, tg)
		return chromedp.Void{}, err
	}
}

// get runs an action that gives a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		html, _ := chromedp.Run(hctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").outerHTML : document.documentElement.outerHTML`))
		t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
	}
	return v
}

func mustExist(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	nodes := get(t, ctx, sel, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0)))
	if len(nodes) == 0 {
		t.Errorf("no %s in the page", sel)
	}
}

// mustButton wants a <button> with that visible text in the section.
func mustButton(t *testing.T, ctx context.Context, section, text string) {
	t.Helper()
	ok := get(t, ctx, "button "+text, chromedp.Evaluate[bool](fmt.Sprintf(
		`[...document.querySelectorAll(%q)].some(b => b.textContent.trim() === %q)`, section+" button", text)))
	if !ok {
		t.Errorf("%s has no button %q", section, text)
	}
}

// waitRequests waits (for an event the page causes, not for a duration)
// until the fake API recorded a request.
func waitRequests(t *testing.T, api *fakeAPI, method, path string) []fakeRequest {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if r := api.recorded(method, path); len(r) > 0 {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page sent no %s %s", method, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
