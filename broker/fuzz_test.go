package broker

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// FuzzParseProxy: any proxy text is accepted as a usable proxy or refused
// with an error that never repeats a password.
func FuzzParseProxy(f *testing.F) {
	for _, s := range []string{"socks5://u:secret@p:1080", "http://p:3128", "socks4a://p:1080", "socks5://:1", "%zz", "http://u:secret@[::1", "ftp://secret@h:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseProxy(s)
		if err != nil {
			if pw := passwordIn(s); pw != "" && strings.Contains(err.Error(), pw) {
				t.Fatalf("error %q shows the password %q", err, pw)
			}
			return
		}
		if u.Hostname() == "" || u.Port() == "" {
			t.Fatalf("accepted %q without host or port", s)
		}
		switch u.Scheme {
		case "socks4", "socks4a", "socks5", "http":
		default:
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
	})
}

// passwordIn returns the text between "user:" and "@" of a URL-like s,
// when it is long enough not to appear in the message by chance.
func passwordIn(s string) string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return ""
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	_, pw, ok := strings.Cut(userinfo, ":")
	if !ok || len(pw) < 6 {
		return ""
	}
	return pw
}

// replyDialer answers every dial with a connection whose far end reads the
// request, sends reply and closes: the client gets all there is at once,
// and never waits for more.
type replyDialer struct{ reply []byte }

func (d replyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, s := net.Pipe()
	go func() {
		defer s.Close()
		s.SetDeadline(time.Now().Add(5 * time.Second))
		go io.Copy(io.Discard, s) // the request, and whatever follows it
		s.Write(d.reply)
	}()
	return c, nil
}

// FuzzProxyReply plays an arbitrary proxy server answer to each kind of
// proxy handshake: the client must fail cleanly or hand back a connection,
// never panic or hang.
func FuzzProxyReply(f *testing.F) {
	f.Add(uint8(0), []byte{0, 90, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(0), []byte{0, 91, 0, 0, 0, 0, 0, 0})
	f.Add(uint8(1), []byte("HTTP/1.1 200 Connection established\r\n\r\nSSH-2.0-x\r\n"))
	f.Add(uint8(1), []byte("HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"))
	f.Add(uint8(2), []byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 22})
	f.Add(uint8(2), []byte{5, 2, 1, 0})
	proxies := []string{"socks4a://p:1080", "http://u:pw@p:3128", "socks5://u:pw@p:1080"}
	f.Fuzz(func(t *testing.T, kind uint8, reply []byte) {
		p, err := ParseProxy(proxies[int(kind)%len(proxies)])
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := dialProxy(ctx, replyDialer{reply}, p, "gateway.example:22")
		if err == nil {
			c.Close()
		}
	})
}

// FuzzKnownHosts loads arbitrary known_hosts text and checks a key against
// it: a malformed file is an error, never a panic, and a key the file does
// not hold is never accepted.
func FuzzKnownHosts(f *testing.F) {
	pub, _, err := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		f.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	otherKey, _ := ssh.NewPublicKey(other)
	line := "gw.example " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
	f.Add(line + "\n")
	f.Add("@cert-authority *.example " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(otherKey))) + "\n" + line)
	f.Add("@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n")
	f.Add("|1|c2FsdA==|aGFzaA== ssh-ed25519 AAAA\n[gw.example]:2222 ssh-rsa AAAAB3\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		path := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := loadHostKeys([]string{path})
		if err != nil {
			return
		}
		addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 22}
		h.algorithms("gw.example:22")
		if h.check("gw.example:22", addr, key) == nil && !strings.Contains(text, strings.Fields(line)[2]) {
			t.Fatalf("key accepted by a file that does not hold it:\n%s", text)
		}
	})
}

// A proxy URL that parses other than meant keeps its password out of the
// error all the same (url.Redacted hides only a parsed user's password).
func TestParseProxyHidesPassword(t *testing.T) {
	for _, s := range []string{"http:/alice:s3cr3tpw@proxy:3128", "socks5://alice:s3cr3tpw@proxy:1080#x", "socks5//alice:s3cr3tpw@proxy:1080", "alice:s3cr3tpw@proxy:1080", "ftp://alice:s3cr3tpw@proxy:21"} {
		_, err := ParseProxy(s)
		if err == nil {
			t.Errorf("%q accepted", s)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3tpw") {
			t.Errorf("ParseProxy(%q) = %v: shows the password", s, err)
		}
	}
}
