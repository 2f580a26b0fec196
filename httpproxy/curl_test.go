package httpproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/internal/testns"
)

// needCurl skips the test without curl, or fails it under CI or
// SHUNT_E2E_REQUIRED.
func needCurl(t *testing.T) {
	t.Helper()
	lack := ""
	if _, err := exec.LookPath("curl"); err != nil {
		lack = "needs curl (apt-get install curl)"
		if os.Getenv("CI") != "" {
			t.Fatal(lack + "; CI is set")
		}
	}
	testns.Need(t, lack)
}

// curl runs curl with args (-q first: no ~/.curlrc) in an environment of
// PATH and env only (no proxy variables of the caller's), and returns its
// standard output and its error with standard error.
func curl(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("curl", append([]string{"-q", "-sS", "--max-time", "60"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("curl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), err
}

// origin is an HTTP server on loopback: /hello answers "hello <method>
// <path>", /sum answers the body's size and sha256, /big sends bulkSize
// pseudo-random bytes (chunked).
func origin() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s host=%s", r.Method, r.URL.Path, r.Host)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, io.LimitReader(newPRNG(), bulkSize))
	})
	mux.HandleFunc("/sum", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	return mux
}

func portOf(t *testing.T, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

func TestCurl(t *testing.T) {
	needCurl(t)
	web := httptest.NewServer(origin())
	defer web.Close()
	tlsWeb := httptest.NewTLSServer(origin())
	defer tlsWeb.Close()
	webPort, tlsPort := portOf(t, web.URL), portOf(t, tlsWeb.URL)

	sp := newSplicer(t, "name.test", "tls.test")
	sp.refuse["blocked.test"] = RefusalBlocked
	p := startProxy(t, &Server{Connect: sp.Connect})
	proxyURL := "http://" + p.addr

	t.Run("plain", func(t *testing.T) {
		out, err := curl(t, nil, "-x", proxyURL, "http://name.test:"+webPort+"/hello")
		if err != nil || out != "hello GET /hello host=name.test:"+webPort {
			t.Errorf("%q, %v", out, err)
		}
	})
	t.Run("plain via http_proxy", func(t *testing.T) {
		out, err := curl(t, []string{"http_proxy=" + proxyURL}, "-X", "PATCH", "http://name.test:"+webPort+"/hello")
		if err != nil || out != "hello PATCH /hello host=name.test:"+webPort {
			t.Errorf("%q, %v", out, err)
		}
	})
	t.Run("two URLs on one connection", func(t *testing.T) {
		before := len(sp.requests())
		out, err := curl(t, nil, "-x", proxyURL, "http://name.test:"+webPort+"/hello", "http://name.test:"+webPort+"/hello?2")
		want := "hello GET /hello host=name.test:" + webPort
		if err != nil || out != want+want {
			t.Errorf("%q, %v", out, err)
		}
		reqs := sp.requests()[before:]
		if len(reqs) != 2 || reqs[0].Client != reqs[1].Client {
			t.Errorf("Connect saw %+v: want two requests from one connection", reqs)
		}
	})
	t.Run("CONNECT", func(t *testing.T) {
		out, err := curl(t, nil, "-p", "-x", proxyURL, "http://name.test:"+webPort+"/hello")
		if err != nil || out != "hello GET /hello host=name.test:"+webPort {
			t.Errorf("%q, %v", out, err)
		}
	})
	t.Run("HTTPS via HTTPS_PROXY", func(t *testing.T) {
		out, err := curl(t, []string{"HTTPS_PROXY=" + proxyURL}, "-k", "https://tls.test:"+tlsPort+"/hello")
		if err != nil || out != "hello GET /hello host=tls.test:"+tlsPort {
			t.Errorf("%q, %v", out, err)
		}
	})

	// A large body, in a file so that curl streams it: with its length,
	// and chunked.
	const size = 32 << 20
	file := filepath.Join(t.TempDir(), "body")
	sum := writeBody(t, file, size)
	want := fmt.Sprintf("%d %s", size, sum)
	t.Run("large POST", func(t *testing.T) {
		out, err := curl(t, nil, "-x", proxyURL, "--data-binary", "@"+file, "http://name.test:"+webPort+"/sum")
		if err != nil || out != want {
			t.Errorf("%q, %v; want %q", out, err, want)
		}
	})
	t.Run("large chunked POST", func(t *testing.T) {
		out, err := curl(t, nil, "-x", proxyURL, "-H", "Transfer-Encoding: chunked", "-T", file, "http://name.test:"+webPort+"/sum")
		if err != nil || out != want {
			t.Errorf("%q, %v; want %q", out, err, want)
		}
	})
	t.Run("large POST over HTTPS", func(t *testing.T) {
		out, err := curl(t, []string{"HTTPS_PROXY=" + proxyURL}, "-k", "--data-binary", "@"+file, "https://tls.test:"+tlsPort+"/sum")
		if err != nil || out != want {
			t.Errorf("%q, %v; want %q", out, err, want)
		}
	})

	t.Run("large download", func(t *testing.T) {
		h := sha256.New()
		io.Copy(h, io.LimitReader(newPRNG(), bulkSize))
		out, err := curl(t, nil, "-x", proxyURL, "http://name.test:"+webPort+"/big")
		if got := sha256.Sum256([]byte(out)); err != nil || len(out) != bulkSize || !bytes.Equal(got[:], h.Sum(nil)) {
			t.Errorf("%d bytes, %v", len(out), err)
		}
	})
	t.Run("blocked", func(t *testing.T) {
		out, err := curl(t, nil, "-x", proxyURL, "-w", "\n%{http_code}", "http://blocked.test/hello")
		if err != nil || out != "shunt: blocked.test:80 is blocked by shunt's rules\n\n403" {
			t.Errorf("%q, %v", out, err)
		}
		out, err = curl(t, nil, "-x", proxyURL, "-w", "%{http_connect}", "-k", "https://blocked.test/")
		if err == nil || out != "403" {
			t.Errorf("CONNECT: %q, %v; want curl to fail with 403", out, err)
		}
		// A refused POST with a body the proxy never reads still gets
		// its 403.
		out, err = curl(t, nil, "-x", proxyURL, "-w", "\n%{http_code}", "--data-binary", "@"+file, "http://blocked.test/sum")
		if err != nil || !strings.HasSuffix(out, "\n403") {
			t.Errorf("POST: %q, %v", out, err)
		}
	})
	t.Run("not a proxy request", func(t *testing.T) {
		out, err := curl(t, nil, "-w", "\n%{http_code}", proxyURL+"/")
		if err != nil || !strings.Contains(out, "curl -x "+proxyURL) || !strings.HasSuffix(out, "\n400") {
			t.Errorf("%q, %v", out, err)
		}
	})

	// The proxy passed the names through: it never looked them up.
	for _, r := range sp.requests() {
		if r.Dst.IsValid() || !strings.HasSuffix(r.Host, ".test") {
			t.Errorf("Connect got %+v: want a name", r)
		}
	}
}

// writeBody writes size pseudo-random bytes to file and returns their
// sha256 in hex.
func writeBody(t *testing.T, file string, size int) string {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	block := make([]byte, 1<<20)
	x := uint32(1)
	for i := range block {
		x = x*1664525 + 1013904223
		block[i] = byte(x >> 24)
	}
	for written := 0; written < size; written += len(block) {
		block[0]++ // no two blocks alike
		if _, err := io.MultiWriter(f, h).Write(block); err != nil {
			t.Fatal(err)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

var _ net.Conn = (*clientConn)(nil)
