package socks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/internal/testns"
)

// needCurl skips a test without curl, or fails it in CI (CI or
// SHUNT_E2E_REQUIRED set), where a skip would hide that it never ran.
func needCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err == nil {
		testns.Need(t, "")
		return path
	}
	lack := "needs curl (on Debian: apt-get install curl)"
	if os.Getenv("CI") != "" || os.Getenv(testns.RequiredEnv) != "" {
		t.Fatal(lack + "; CI or " + testns.RequiredEnv + " makes this a failure")
	}
	testns.Need(t, lack)
	return ""
}

// curlRig is a Server whose Connect dials a local HTTP server for every
// name but blocked.test, as shunt's engine opens name:port on the far
// side; the names are not resolvable, so a client or server that looked
// them up would fail.
type curlRig struct {
	proxy string // the SOCKS server's address
	reqs  chan Request
	flows sync.WaitGroup
}

func startCurlRig(t *testing.T, auth func(user, pass string) bool) *curlRig {
	t.Helper()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		fmt.Fprintf(w, "host %s sha256 %s\n", r.Host, hex.EncodeToString(sum[:]))
	}))
	t.Cleanup(web.Close)
	cr := &curlRig{reqs: make(chan Request, 16)}
	s := &Server{Auth: auth, Connect: func(ctx context.Context, req Request, accept func() (net.Conn, error)) error {
		cr.reqs <- req
		if req.Host == "blocked.test" {
			return refusalErr{RefusalBlocked}
		}
		up, err := (&net.Dialer{}).DialContext(ctx, "tcp", web.Listener.Addr().String())
		if err != nil {
			return refusalErr{RefusalUnreachable}
		}
		c, err := accept()
		if err != nil {
			up.Close()
			return err
		}
		cr.flows.Go(func() { splice(c, up) })
		return nil
	}}
	r := startRig(t, s)
	t.Cleanup(cr.flows.Wait) // runs before the rig's cleanup: flows end with curl
	cr.proxy = r.addr
	return cr
}

// splice copies both ways, half-closing, until both directions end.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	half := func(dst, src net.Conn) {
		io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
		if cw, ok := dst.(closeWriter); ok {
			cw.CloseWrite()
		}
	}
	wg.Go(func() { half(a, b) })
	half(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// curl runs curl with args (no curlrc, no proxy from the environment) and
// returns its exit code, stdout and stderr.
func curl(t *testing.T, path string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append([]string{"-q", "-sS", "--max-time", "30"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func (cr *curlRig) request(t *testing.T) Request {
	t.Helper()
	select {
	case req := <-cr.reqs:
		return req
	default:
		t.Fatal("curl's request did not reach Connect")
	}
	return Request{}
}

// TestCurl: curl's SOCKS5 (with host names) and SOCKS4a reach the far
// side by name, carry a body both ways, and report the refusal of a
// blocked name.
func TestCurl(t *testing.T) {
	path := needCurl(t)
	cr := startCurlRig(t, nil)
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	sum := sha256.Sum256(body)
	file := t.TempDir() + "/body"
	if err := os.WriteFile(file, body, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		flag    string
		version int
		refusal string // what curl says of blocked.test
	}{
		{"socks5-hostname", "--socks5-hostname", 5, "(5)"},
		{"socks4a", "--socks4a", 4, "request rejected or failed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := curl(t, path, tt.flag, cr.proxy, "--data-binary", "@"+file, "http://internal.test:8080/upload")
			if code != 0 {
				t.Fatalf("curl exit %d: %s", code, errs)
			}
			if want := fmt.Sprintf("host internal.test:8080 sha256 %x\n", sum); out != want {
				t.Errorf("curl got %q, want %q", out, want)
			}
			req := cr.request(t)
			if req.Host != "internal.test" || req.Port != 8080 || req.Dst.IsValid() || req.Version != tt.version {
				t.Errorf("request %+v: want the name internal.test:8080, not resolved, version %d", req, tt.version)
			}

			code, _, errs = curl(t, path, tt.flag, cr.proxy, "http://blocked.test/")
			t.Logf("blocked: curl exit %d: %s", code, strings.TrimSpace(errs))
			if code != 97 || !strings.Contains(errs, tt.refusal) {
				t.Errorf("blocked: curl exit %d, %q; want 97 (proxy handshake error) and %q", code, errs, tt.refusal)
			}
			if req := cr.request(t); req.Host != "blocked.test" {
				t.Errorf("blocked: request %+v", req)
			}
		})
	}
}

// TestCurlAuth: curl's username and password get in, a wrong one is
// rejected, and SOCKS4a, which cannot give one, is refused.
func TestCurlAuth(t *testing.T) {
	path := needCurl(t)
	cr := startCurlRig(t, func(user, pass string) bool { return user == "alice" && pass == "s3cret" })

	code, out, errs := curl(t, path, "-x", "socks5h://alice:s3cret@"+cr.proxy, "http://internal.test/")
	if code != 0 || out != fmt.Sprintf("host internal.test sha256 %x\n", sha256.Sum256(nil)) {
		t.Fatalf("curl exit %d, %q, %s", code, out, errs)
	}
	if req := cr.request(t); req.User != "alice" || req.Host != "internal.test" || req.Port != 80 {
		t.Errorf("request %+v", req)
	}

	code, _, errs = curl(t, path, "-x", "socks5h://alice:wr0ng@"+cr.proxy, "http://internal.test/")
	t.Logf("wrong password: curl exit %d: %s", code, strings.TrimSpace(errs))
	if code != 97 || !strings.Contains(errs, "rejected") {
		t.Errorf("wrong password: curl exit %d, %q; want 97, rejected", code, errs)
	}
	code, _, errs = curl(t, path, "-x", "socks5h://"+cr.proxy, "http://internal.test/")
	if code != 97 {
		t.Errorf("no password: curl exit %d, %q; want 97", code, errs)
	}
	code, _, errs = curl(t, path, "--socks4a", cr.proxy, "http://internal.test/")
	if code != 97 || !strings.Contains(errs, "request rejected or failed") {
		t.Errorf("socks4a: curl exit %d, %q; want 97, rejected", code, errs)
	}
	select {
	case req := <-cr.reqs:
		t.Errorf("Connect reached without authentication: %+v", req)
	default:
	}
}
