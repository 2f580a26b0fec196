//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/state"
)

// nobody is the unprivileged user the listener tests run shunt as.
const nobody = 65534

// startUnprivileged starts shunt up as nobody, with no capabilities, in
// the client namespace: its binary, key, known_hosts and configuration
// are copies in a directory of nobody's own. The profile is called gw.
func startUnprivileged(t *testing.T, topo *topology, sd *sshd, rest string) (*shunt, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "shunt-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	copyAs := func(src, dst string, mode os.FileMode) {
		t.Helper()
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(dst, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
	os.Chown(dir, nobody, nobody)
	bin := filepath.Join(dir, "shunt")
	copyAs(shuntBin, bin, 0o755)
	copyAs(sd.clientKey, filepath.Join(dir, "id"), 0o600)
	copyAs(sd.knownHosts, filepath.Join(dir, "known_hosts"), 0o600)
	socket := filepath.Join(dir, "shunt.sock")
	cfg := fmt.Sprintf(`profiles:
  - name: gw
    host: %s
    user: root
    identity_files: [%s]
    known_hosts: %s
control:
  socket: %s
state_dir: %s
log:
  level: debug
tun:
  enabled: false
%s`, gatewayAddr, filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts"), socket, filepath.Join(dir, "state"), rest)
	path := filepath.Join(dir, "shunt.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(path, nobody, nobody)
	s := &shunt{log: &syncBuffer{}, done: make(chan error, 1), socket: socket}
	s.cmd = topo.client.command("setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups", "--inh-caps=-all",
		bin, "up", "--global", "", "--user-config", "", "--config", path)
	s.cmd.Env = append(os.Environ(), "HOME="+dir, "SUDO_USER=", "SSH_AUTH_SOCK=", "USER=nobody")
	s.run(t)
	return s, dir
}

// asNobody is a command line run as nobody.
func asNobody(args ...string) []string {
	return append([]string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups"}, args...)
}

// Without a TUN and without root: a SOCKS5 proxy, an HTTP proxy and a
// static tunnel, all through the rules (the static tunnel through its own
// profile), as nobody with no capabilities. A name asked through SOCKS is
// never looked up on the client (its resolver answers nothing): the
// gateway resolves it.
func TestListenersWithoutTUN(t *testing.T) {
	prerequisites(t, "curl", "setpriv")
	topo := newTopology(t)
	// The gateway, and only it, knows internal.shunt.test.
	if err := os.WriteFile(filepath.Join("/etc/netns", topo.gateway.name, "hosts"), []byte("127.0.0.1 localhost\n"+internalAddr+" internal.shunt.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sd := startSSHD(t, topo.gateway)
	svc := startServices(t, topo.internal)
	tlsLn := tls.NewListener(topo.internal.listen(t, "[::]:8443"), &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "internal.shunt.test")}})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "over TLS through the HTTP proxy\n") })}
	go srv.Serve(tlsLn)
	t.Cleanup(func() { srv.Close() })

	sh, dir := startUnprivileged(t, topo, sd, fmt.Sprintf(`socks_listen: 127.0.0.1:1080
http_proxy_listen: 127.0.0.1:8080
static_tunnels:
  - listen: 127.0.0.1:1143
    destination: %s:%d
    profile: gw
rules:
  - name: no-telnet
    ports: [%d]
    action: block
  - name: internal
    destinations: [172.31.2.0/24, "*.shunt.test"]
    action: tunnel
    profile: gw
`, internalAddr, portDownload, portBlocked))
	if strings.Contains(sh.log.String(), "level=error") {
		t.Errorf("errors at start:\n%s", sh.log)
	}
	blob := func(t *testing.T, args ...string) {
		t.Helper()
		out, err := topo.client.command(append(asNobody("curl", "-sS", "--fail", "--max-time", "60"), args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		if got := sha256.Sum256(out); got != svc.downloadSum {
			t.Fatalf("downloaded %d bytes, sha256 %x, served %x", len(out), got, svc.downloadSum)
		}
	}

	t.Run("curl --socks5-hostname, 64 MiB by a name only the gateway knows", func(t *testing.T) {
		blob(t, "--socks5-hostname", "127.0.0.1:1080", fmt.Sprintf("http://internal.shunt.test:%d/blob", portDownload))
	})
	t.Run("curl --socks4a", func(t *testing.T) {
		blob(t, "--socks4a", "127.0.0.1:1080", fmt.Sprintf("http://internal.shunt.test:%d/blob", portDownload))
	})
	// curl names the SOCKS5 reply code in its error: "(5)" is connection
	// refused.
	socksRefused := func(t *testing.T, port int) {
		t.Helper()
		out, err := topo.client.command(asNobody("curl", "-sS", "--max-time", "30", "--socks5-hostname", "127.0.0.1:1080", fmt.Sprintf("http://internal.shunt.test:%d/", port))...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "(5)") {
			t.Fatalf("curl: %v: %s; want SOCKS5 reply 5 (connection refused)", err, out)
		}
	}
	t.Run("SOCKS5: a blocked destination gets reply 5", func(t *testing.T) { socksRefused(t, portBlocked) })
	t.Run("SOCKS5: nothing listening there gets reply 5", func(t *testing.T) { socksRefused(t, portNothing) })
	t.Run("SOCKS5: another user's flow is refused", func(t *testing.T) {
		// root's curl: the profile carries only nobody's flows.
		out, err := topo.client.command("curl", "-sS", "--max-time", "30", "--socks5-hostname", "127.0.0.1:1080", fmt.Sprintf("http://internal.shunt.test:%d/", portDownload)).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "(5)") || !strings.Contains(sh.log.String(), "this flow is uid 0's") {
			t.Fatalf("root's curl through nobody's shunt: %v: %s", err, out)
		}
	})
	t.Run("HTTPS_PROXY to a TLS server", func(t *testing.T) {
		out := topo.client.exec(t, asNobody("env", "HTTPS_PROXY=http://127.0.0.1:8080", "curl", "-sS", "--fail", "-k", "--max-time", "30", "https://internal.shunt.test:8443/")...)
		if !strings.Contains(out, "over TLS through the HTTP proxy") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("HTTP proxy, plain http:// forwarding", func(t *testing.T) {
		blob(t, "-x", "http://127.0.0.1:8080", fmt.Sprintf("http://internal.shunt.test:%d/blob", portDownload))
	})
	t.Run("HTTP proxy: a blocked destination gets 403", func(t *testing.T) {
		out := topo.client.exec(t, asNobody("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", "-x", "http://127.0.0.1:8080", fmt.Sprintf("http://%s:%d/", internalAddr, portBlocked))...)
		if strings.TrimSpace(out) != "403" {
			t.Fatalf("status %q, want 403", out)
		}
	})
	t.Run("static tunnel, 64 MiB", func(t *testing.T) {
		blob(t, "http://127.0.0.1:1143/blob")
	})
	t.Run("status lists the listeners", func(t *testing.T) {
		out := topo.client.exec(t, shuntBin, "status", "--json", "--socket", sh.socket)
		var st state.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		kinds := map[string]state.Listener{}
		for _, l := range st.Listeners {
			kinds[l.Kind] = l
		}
		if s := kinds["socks"]; s.Listen != "127.0.0.1:1080" || s.Clients < 4 {
			t.Errorf("socks listener %+v", s)
		}
		if s := kinds["http"]; s.Listen != "127.0.0.1:8080" || s.Clients < 3 {
			t.Errorf("http listener %+v", s)
		}
		if s := kinds["static"]; s.Destination != fmt.Sprintf("%s:%d", internalAddr, portDownload) || s.Profile != "gw" || s.Clients < 1 {
			t.Errorf("static listener %+v", s)
		}
		if st.Capture {
			t.Error("status says capture is on without a TUN")
		}
		text := topo.client.exec(t, shuntBin, "status", "--socket", sh.socket)
		if !strings.Contains(text, "127.0.0.1:1080") {
			t.Errorf("shunt status does not list the listeners:\n%s", text)
		}
	})
	t.Run("nothing of root's", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
			st, _ := os.Stat(filepath.Join(dir, "state"))
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != nobody {
				t.Errorf("state dir owned by uid %d", sys.Uid)
			}
		}
		if l := sh.log.String(); !strings.Contains(l, "capturing nothing (tun.enabled: false)") || strings.Contains(l, "level=error") {
			t.Error("shunt captured something, or logged an error")
		}
	})
	sh.stop(t)
}

// selfSigned is a certificate for name, signed by its own key.
func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
