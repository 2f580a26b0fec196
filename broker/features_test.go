package broker

import (
	"context"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// fakePrompter answers questions with a function and records them.
type fakePrompter struct {
	mu     sync.Mutex
	asked  []Question
	answer func(Question) (string, error)
}

func (f *fakePrompter) Ask(_ context.Context, q Question) (string, error) {
	f.mu.Lock()
	f.asked = append(f.asked, q)
	f.mu.Unlock()
	return f.answer(q)
}

func (f *fakePrompter) count(k QuestionKind) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, q := range f.asked {
		if q.Kind == k {
			n++
		}
	}
	return n
}

func answers(m map[QuestionKind]string) *fakePrompter {
	return &fakePrompter{answer: func(q Question) (string, error) {
		if a, ok := m[q.Kind]; ok {
			return a, nil
		}
		return "", fmt.Errorf("unexpected question %v", q.Kind)
	}}
}

// server starts a brokertest server and a profile that trusts its key.
func server(t *testing.T, opts brokertest.Options) (*brokertest.Server, Profile) {
	t.Helper()
	srv := brokertest.NewWithOptions(t, opts)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(srv.KnownHostsLine()), 0o600)
	return srv, Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice", KnownHosts: []string{kh},
		IdentityFiles: []string{filepath.Join(t.TempDir(), "none")}}
}

// keyedServer is server with a fresh client key that the server accepts
// and the profile uses; dir holds the key.
func keyedServer(t *testing.T) (*brokertest.Server, Profile, string) {
	t.Helper()
	srv, p := server(t, brokertest.Options{})
	dir := t.TempDir()
	_, s := writeKey(t, dir, "id", "")
	srv.Allow(s.PublicKey())
	p.IdentityFiles = []string{filepath.Join(dir, "id")}
	return srv, p, dir
}

func newBroker(t *testing.T, opts Options, profiles ...Profile) *Broker {
	t.Helper()
	if opts.Log == nil {
		opts.Log = quietLog()
	}
	b, err := New(profiles, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func mustDial(t *testing.T, b *Broker, profile, target string) net.Conn {
	t.Helper()
	c, err := b.Dial(context.Background(), profile, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	roundTrip(t, c, "ping")
	return c
}

func TestPasswordAuthIsAskedOnce(t *testing.T) {
	srv, p := server(t, brokertest.Options{Password: "hunter2"})
	p.AuthMethods = []string{AuthPassword}
	pr := answers(map[QuestionKind]string{Password: "hunter2"})
	b := newBroker(t, Options{Prompter: pr}, p)
	target := brokertest.Echo(t)
	c := mustDial(t, b, "gw", target)
	c.Close()
	srv.Drop()
	waitUntil(t, func() bool { return !b.Connections()[0].Up })
	mustDial(t, b, "gw", target) // reconnects with the remembered password
	if n := pr.count(Password); n != 1 {
		t.Fatalf("asked for the password %d times, want 1", n)
	}
	if q := pr.asked[0]; q.Text != fmt.Sprintf("alice@127.0.0.1:%d's password: ", srv.Port()) || q.Echo {
		t.Errorf("question = %+v", q)
	}
}

func TestWrongPasswordIsAskedAgain(t *testing.T) {
	_, p := server(t, brokertest.Options{Password: "right"})
	p.AuthMethods = []string{AuthPassword}
	tries := 0
	pr := &fakePrompter{answer: func(Question) (string, error) {
		tries++
		if tries == 1 {
			return "wrong", nil
		}
		return "right", nil
	}}
	b := newBroker(t, Options{Prompter: pr}, p)
	mustDial(t, b, "gw", brokertest.Echo(t))
	if tries != 2 {
		t.Fatalf("asked %d times, want 2", tries)
	}
}

func TestNoPrompterSaysWhy(t *testing.T) {
	_, p := server(t, brokertest.Options{Password: "pw"})
	p.AuthMethods = []string{AuthPassword}
	b := newBroker(t, Options{}, p)
	_, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err == nil || !strings.Contains(explanation(t, err), "has nobody to ask") {
		t.Fatalf("err = %v", err)
	}
}

func TestKeyboardInteractive(t *testing.T) {
	_, p := server(t, brokertest.Options{Challenge: "Verification code: ", Answer: "424242"})
	p.AuthMethods = []string{AuthKeyboardInteractive}
	pr := answers(map[QuestionKind]string{Challenge: "424242"})
	b := newBroker(t, Options{Prompter: pr}, p)
	mustDial(t, b, "gw", brokertest.Echo(t))
	if len(pr.asked) != 1 || pr.asked[0].Text != "Verification code: " {
		t.Fatalf("asked %+v", pr.asked)
	}
}

// writeKey writes a private key, encrypted when passphrase is set, and its
// .pub.
func writeKey(t *testing.T, dir, name, passphrase string) (string, ssh.Signer) {
	t.Helper()
	priv := brokertest.NewPrivateKey(t)
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
	s, _ := ssh.NewSignerFromKey(priv)
	os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o600)
	return path, s
}

// An encrypted key is decrypted only when the server accepts it, and once.
func TestEncryptedKeyAskedOnlyWhenAccepted(t *testing.T) {
	dir := t.TempDir()
	unused, _ := writeKey(t, dir, "id_other", "other-pass")
	used, s := writeKey(t, dir, "id_used", "right-pass")
	srv, p := server(t, brokertest.Options{Authorized: []ssh.PublicKey{s.PublicKey()}})
	p.IdentityFiles = []string{unused, used}
	pr := answers(map[QuestionKind]string{Passphrase: "right-pass"})
	b := newBroker(t, Options{Prompter: pr}, p)
	mustDial(t, b, "gw", brokertest.Echo(t)).Close()
	if len(pr.asked) != 1 || !strings.Contains(pr.asked[0].Text, "id_used") {
		t.Fatalf("asked %+v, want one question for id_used", pr.asked)
	}
	srv.Drop()
	waitUntil(t, func() bool { return !b.Connections()[0].Up })
	mustDial(t, b, "gw", brokertest.Echo(t))
	if len(pr.asked) != 1 {
		t.Fatalf("asked again after reconnect: %+v", pr.asked)
	}
}

func newCA(t *testing.T) ssh.Signer { return brokertest.NewKey(t) }

func sign(t *testing.T, ca ssh.Signer, key ssh.PublicKey, typ uint32, principals ...string) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key: key, CertType: typ, KeyId: "test", ValidPrincipals: principals,
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestUserCertificate(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	id, s := writeKey(t, dir, "id_ed25519", "")
	cert := sign(t, ca, s.PublicKey(), ssh.UserCert, "alice")
	os.WriteFile(id+"-cert.pub", ssh.MarshalAuthorizedKey(cert), 0o600)
	// The server knows no key, only the CA.
	_, p := server(t, brokertest.Options{UserCA: ca.PublicKey()})
	p.IdentityFiles = []string{id}
	b := newBroker(t, Options{}, p)
	mustDial(t, b, "gw", brokertest.Echo(t))
}

func TestHostCertificateAndKnownHostsForms(t *testing.T) {
	hostCA := newCA(t)
	hostKey := brokertest.NewKey(t)
	cert := sign(t, hostCA, hostKey.PublicKey(), ssh.HostCert, "127.0.0.1")
	certSrv := brokertest.NewWithOptions(t, brokertest.Options{HostKey: hostKey, HostCertificate: cert})
	plainSrv := brokertest.NewWithOptions(t, brokertest.Options{HostKey: hostKey})
	target := brokertest.Echo(t)
	plain := string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	tests := []struct {
		name       string
		cert       bool // the server presents a host certificate
		knownHosts func(addr string, port int) string
		wantErr    string
	}{
		{"cert-authority", true, func(addr string, _ int) string {
			return "@cert-authority " + addr + " " + string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))
		}, ""},
		// x/crypto matches "*" only on port 22; "[*]:port" is the form for others.
		{"cert-authority wildcard", true, func(_ string, port int) string {
			return fmt.Sprintf("@cert-authority [*]:%d ", port) + string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))
		}, ""},
		{"other CA", true, func(addr string, _ int) string {
			return "@cert-authority " + addr + " " + string(ssh.MarshalAuthorizedKey(newCA(t).PublicKey()))
		}, "no authorities"},
		{"hashed", false, func(addr string, _ int) string { return knownhosts.HashHostname(addr) + " " + plain }, ""},
		{"several files, second has it", false, nil, ""},
		{"revoked", false, func(addr string, _ int) string { return "@revoked * " + plain + addr + " " + plain }, "REVOKED"},
		{"CA only, plain key offered", false, func(addr string, _ int) string {
			return "@cert-authority " + addr + " " + string(ssh.MarshalAuthorizedKey(hostCA.PublicKey()))
		}, "is unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := plainSrv
			if tt.cert {
				srv = certSrv
			}
			addr := fmt.Sprintf("[127.0.0.1]:%d", srv.Port())
			dir := t.TempDir()
			first := filepath.Join(dir, "known_hosts")
			second := filepath.Join(dir, "known_hosts2")
			if tt.knownHosts != nil {
				os.WriteFile(first, []byte(tt.knownHosts(addr, srv.Port())+"\n"), 0o600)
			} else {
				os.WriteFile(first, []byte("# nothing here\n"), 0o600)
				os.WriteFile(second, []byte(addr+" "+plain), 0o600)
			}
			_, s := writeKey(t, dir, "id", "")
			srv.Allow(s.PublicKey())
			p := Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice",
				IdentityFiles: []string{filepath.Join(dir, "id")}, KnownHosts: []string{first, second}}
			b := newBroker(t, Options{}, p)
			c, err := b.Dial(context.Background(), "gw", target)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestAcceptNewRecordsTheKey(t *testing.T) {
	srv, p, dir := keyedServer(t)
	p.KnownHosts = []string{filepath.Join(dir, "sub", "known_hosts")} // does not exist yet
	p.HostKeyPolicy = AcceptNew
	b := newBroker(t, Options{}, p)
	mustDial(t, b, "gw", brokertest.Echo(t))
	data, err := os.ReadFile(p.KnownHosts[0])
	if err != nil || !strings.HasPrefix(string(data), fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", srv.Port())) {
		t.Fatalf("known_hosts = %q, %v", data, err)
	}
	// Now strict works with the recorded key.
	p.HostKeyPolicy = Strict
	p.Name = "strict"
	b2 := newBroker(t, Options{}, p)
	mustDial(t, b2, "strict", brokertest.Echo(t))
}

func TestAskPolicy(t *testing.T) {
	for _, ans := range []string{"yes", "no"} {
		t.Run(ans, func(t *testing.T) {
			srv, p, dir := keyedServer(t)
			p.KnownHosts = []string{filepath.Join(dir, "known_hosts")}
			p.HostKeyPolicy = Ask
			pr := answers(map[QuestionKind]string{HostKey: ans})
			b := newBroker(t, Options{Prompter: pr}, p)
			c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
			if ans == "yes" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			} else if err == nil || !strings.Contains(err.Error(), "the user said no") {
				t.Fatalf("err = %v", err)
			}
			if len(pr.asked) != 1 || !strings.Contains(pr.asked[0].Text, ssh.FingerprintSHA256(srv.HostKey.PublicKey())) {
				t.Fatalf("asked %+v", pr.asked)
			}
		})
	}
}

func TestFailoverToSecondHost(t *testing.T) {
	srv, p, _ := keyedServer(t)
	// 127.0.0.2 is local but nothing listens there on that port.
	p.Hosts = []string{"127.0.0.2", "127.0.0.1"}
	log, hook := test.NewNullLogger()
	b := newBroker(t, Options{Log: log}, p)
	mustDial(t, b, "gw", brokertest.Echo(t))
	found := false
	for _, e := range hook.AllEntries() {
		if e.Message == "failed over to the next host" && e.Data["server"] == fmt.Sprintf("127.0.0.1:%d", srv.Port()) {
			found = true
		}
	}
	if !found {
		t.Fatal("the failover was not logged with the host that answered")
	}
	if st := b.Connections()[0]; st.Server != fmt.Sprintf("127.0.0.1:%d", srv.Port()) {
		t.Fatalf("status = %+v", st)
	}
}

func TestAllHostsDownNamesEach(t *testing.T) {
	_, p := server(t, brokertest.Options{})
	p.Hosts = []string{"127.0.0.2", "127.0.0.3"}
	b := newBroker(t, Options{}, p)
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	for _, h := range []string{"127.0.0.2", "127.0.0.3"} {
		if err == nil || !strings.Contains(err.Error(), "connect to SSH server "+h) {
			t.Errorf("err = %v, want it to name %s", err, h)
		}
	}
}

func TestJumpProfile(t *testing.T) {
	dir := t.TempDir()
	_, s := writeKey(t, dir, "id", "")
	jumpSrv, jump := server(t, brokertest.Options{Authorized: []ssh.PublicKey{s.PublicKey()}})
	inner, p := server(t, brokertest.Options{Authorized: []ssh.PublicKey{s.PublicKey()}})
	jump.Name, jump.IdentityFiles = "bastion", []string{filepath.Join(dir, "id")}
	p.Name, p.IdentityFiles, p.Jump = "inner", []string{filepath.Join(dir, "id")}, "bastion"
	b := newBroker(t, Options{}, jump, p)
	mustDial(t, b, "inner", brokertest.Echo(t))
	if jumpSrv.Logins.Load() != 1 || inner.Logins.Load() != 1 {
		t.Fatalf("logins: bastion %d, inner %d; want 1 each", jumpSrv.Logins.Load(), inner.Logins.Load())
	}
}

func TestJumpLoopRejected(t *testing.T) {
	_, err := New([]Profile{{Name: "a", Hosts: []string{"x"}, Jump: "b"}, {Name: "b", Hosts: []string{"y"}, Jump: "a"}}, Options{Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "loop") {
		t.Fatalf("err = %v", err)
	}
}

// connections: 4 spreads 16 concurrent flows over 4 SSH connections.
func TestPoolSpreadsFlows(t *testing.T) {
	srv, p, _ := keyedServer(t)
	p.Connections = 4
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	var wg sync.WaitGroup
	conns := make(chan net.Conn, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := b.Dial(context.Background(), "gw", target)
			if err != nil {
				t.Error(err)
				return
			}
			conns <- c
		}()
	}
	wg.Wait()
	close(conns)
	for _, st := range b.Connections() {
		if !st.Up || st.Channels != 4 {
			t.Errorf("connection %d: %+v, want up with 4 channels", st.Index, st)
		}
	}
	if n := srv.Logins.Load(); n != 4 {
		t.Errorf("%d logins, want 4", n)
	}
	for c := range conns {
		c.Close()
	}
}

func TestIdleTimeoutClosesConnection(t *testing.T) {
	_, p, _ := keyedServer(t)
	p.IdleTimeout = 50 * time.Millisecond
	log, hook := test.NewNullLogger()
	b := newBroker(t, Options{Log: log}, p)
	c := mustDial(t, b, "gw", brokertest.Echo(t))
	time.Sleep(100 * time.Millisecond)
	if !b.Connections()[0].Up {
		t.Fatal("closed while a channel was open")
	}
	c.Close()
	waitUntil(t, func() bool { return !b.Connections()[0].Up })
	waitUntil(t, func() bool {
		for _, e := range hook.AllEntries() {
			if e.Message == "closing idle SSH connection" {
				return true
			}
		}
		return false
	})
}

// A channel whose SSH connection dies reads ErrConnectionLost, not EOF.
func TestConnectionLostIsNotEOF(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.srv.Drop()
	_, err = io.ReadAll(c)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("read after the connection died: %v, want ErrConnectionLost", err)
	}
}

// After a failed attempt, flows are refused at once until the backoff
// ends, with the reason and when the next attempt comes.
func TestBackoffAfterFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	b := newBroker(t, Options{}, Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: port})
	if _, err := b.Dial(context.Background(), "gw", "10.0.0.1:25"); err == nil || !strings.Contains(err.Error(), "connect to SSH server") {
		t.Fatalf("first dial: %v", err)
	}
	start := time.Now()
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	var se *SetupError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "next attempt in") || time.Since(start) > time.Second {
		t.Fatalf("second dial: %v after %v, want an immediate SetupError naming the next attempt", err, time.Since(start))
	}
}

// Keepalives notice a server that went silent.
func TestKeepaliveClosesSilentConnection(t *testing.T) {
	f := newFixture(t)
	relay := newFreezableRelay(t, f.srv.Addr)
	b := f.broker(t, func(p *Profile, _ *Options) {
		p.Port = relay.port()
		p.KeepaliveInterval = 50 * time.Millisecond
		p.KeepaliveCount = 2
		kh := filepath.Join(f.dir, "kh_relay")
		os.WriteFile(kh, []byte(strings.Replace(f.srv.KnownHostsLine(), fmt.Sprint(f.srv.Port()), fmt.Sprint(relay.port()), 1)), 0o600)
		p.KnownHosts = []string{kh}
	})
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	relay.freeze()
	_, err = io.ReadAll(c)
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("read on a silent connection: %v, want ErrConnectionLost", err)
	}
}

// freezableRelay forwards TCP until frozen, then swallows everything.
type freezableRelay struct {
	ln     net.Listener
	frozen chan struct{}
	once   sync.Once
}

func newFreezableRelay(t *testing.T, target string) *freezableRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &freezableRelay{ln: ln, frozen: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					select {
					case <-r.frozen:
						continue // swallow
					default:
					}
					dst.Write(buf[:n])
				}
			}
			go pipe(up, c)
			go pipe(c, up)
			t.Cleanup(func() { c.Close(); up.Close() })
		}
	}()
	return r
}

func (r *freezableRelay) port() int { return r.ln.Addr().(*net.TCPAddr).Port }
func (r *freezableRelay) freeze()   { r.once.Do(func() { close(r.frozen) }) }

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDialViaConnectsToTheDestinationHost(t *testing.T) {
	_, p, _ := keyedServer(t)
	p.Hosts = []string{"192.0.2.1"} // the profile's own host is never used
	b := newBroker(t, Options{}, p)
	target := brokertest.Echo(t)
	c, err := b.DialVia(context.Background(), "gw", "127.0.0.1", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "end to end")
	var se *SetupError
	if _, err := b.DialVia(context.Background(), "gw", "127.0.0.2", target); !errors.As(err, &se) || !se.TunnelSetupFailed() {
		t.Fatalf("no server at 127.0.0.2: %v, want a SetupError", err)
	}
	// A refused channel is not a setup failure.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := b.DialVia(context.Background(), "gw", "127.0.0.1", dead); errors.As(err, &se) {
		t.Fatalf("refused channel reported as setup failure: %v", err)
	}
}
