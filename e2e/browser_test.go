//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is Debian's, the browser the console's end-to-end tests drive.
const chromium = "/usr/bin/chromium"

// browser is a headless Chromium running inside a namespace, so that it
// reaches what listens on that namespace's loopback (the web console).
// chromedp talks to it over a pipe (fds 3 and 4), which `ip netns exec`
// passes on, so the test itself stays in its own namespace.
type browser struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	logs   []string // the page's console messages and exceptions
}

func startBrowser(t *testing.T, in *ns) *browser {
	t.Helper()
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "chromium-in-"+in.name)
	script := "#!/bin/sh\nexec ip netns exec " + in.name + " " + chromium + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(wrapper),
		chromedp.NoSandbox, // root, in a namespace: Chromium's sandbox refuses
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	b := &browser{ctx: ctx, cancel: func() { cancelB(); cancelA() }}
	// The first Run starts the browser, which then lives as long as ctx:
	// no deadline on this one.
	if err := chromedp.Do(ctx); err != nil {
		b.cancel()
		t.Fatalf("starting chromium in %s: %v", in.name, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
				b.mu.Lock()
				b.logs = append(b.logs, fmt.Sprintf("%s %s (%s:%d)", m, m.Source, m.URL, m.Line))
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(b.cancel)
	return b
}

// problems are the warnings and errors the page logged so far.
func (b *browser) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logs...)
}

// do runs the steps, failing the test with the page's main element when
// one does not succeed within a generous minute.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	browserValue(t, b, what, chromedp.Steps(steps...))
}

// browserValue runs an action that gives a value.
func browserValue[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		hctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		html, _ := chromedp.Run(hctx, chromedp.Evaluate[string](`document.querySelector("main") ? document.querySelector("main").outerHTML : document.documentElement.outerHTML`))
		t.Fatalf("browser: %s: %v\npage: %.4000s", what, err, html)
	}
	return v
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	return browserValue(t, b, expr, chromedp.Evaluate[T](expr))
}

// poll waits until the expression is truthy in the page, and gives its
// value.
func poll[T any](t *testing.T, b *browser, what, expr string) T {
	t.Helper()
	return browserValue(t, b, what, chromedp.Poll[T](expr, chromedp.WithPollingTimeout(55*time.Second)))
}

// screenshot saves the whole page as dir/name.png.
func (b *browser) screenshot(t *testing.T, dir, name string) string {
	t.Helper()
	png := browserValue(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
	return path
}

// artifactsDir is where a test's screenshots go: its artifact directory
// (kept under go test's -outputdir with -artifacts, as CI runs it; a
// temporary one otherwise), in a folder name.
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.ArtifactDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifacts in %s", dir)
	return dir
}

// parseBytes reads the console's byte counts ("512 B", "1.5 KiB",
// "64 MiB") back as a number of bytes.
func parseBytes(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("byte count %q: want a number and a unit", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("byte count %q: %w", s, err)
	}
	for i, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if f[1] == u {
			for range i {
				v *= 1024
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("byte count %q: unknown unit", s)
}
