package broker

import (
	"context"
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

type fixture struct {
	srv     *brokertest.Server
	key     ssh.Signer
	priv    ed25519.PrivateKey
	dir     string
	profile Profile
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	priv := brokertest.NewPrivateKey(t)
	key, _ := ssh.NewSignerFromKey(priv)
	srv := brokertest.New(t, key.PublicKey())
	dir := t.TempDir()
	f := &fixture{srv: srv, key: key, priv: priv, dir: dir}
	idFile := filepath.Join(dir, "id_ed25519")
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(idFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(srv.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.profile = Profile{
		Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice",
		IdentityFiles: []string{idFile}, KnownHosts: []string{kh},
	}
	return f
}

func (f *fixture) broker(t *testing.T, mod ...func(*Profile, *Options)) *Broker {
	t.Helper()
	p := f.profile
	opts := Options{Log: quietLog()}
	for _, m := range mod {
		m(&p, &opts)
	}
	b, err := New([]Profile{p}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.Out = io.Discard
	return l
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q", got)
	}
}

func TestDialThroughProfile(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "hello")
	// Half-close reaches the target: it echoes, then ends the echo.
	c.(interface{ CloseWrite() error }).CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after CloseWrite: %q, %v", rest, err)
	}
	if _, err := b.Dial(context.Background(), "nope", target); err == nil || !strings.Contains(err.Error(), `no connection profile "nope"`) {
		t.Fatalf("unknown profile: %v", err)
	}
}

// 100 flows arriving at once cause one SSH handshake.
func TestSingleFlight(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	target := brokertest.Echo(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := b.Dial(context.Background(), "gw", target)
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.srv.Logins.Load(); n != 1 {
		t.Fatalf("%d logins for 100 concurrent flows, want 1", n)
	}
}

func TestReconnectAfterDrop(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Drop()
	// The flow on the dead connection ends.
	if _, err := io.ReadAll(c); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("old flow ended with %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err = b.Dial(context.Background(), "gw", target)
		if err == nil {
			break
		}
		// A Dial racing the drop may still see the old connection.
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer c.Close()
	roundTrip(t, c, "again")
	if n := f.srv.Logins.Load(); n != 2 {
		t.Fatalf("%d logins, want 2", n)
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t, func(p *Profile, _ *Options) {
		kh := filepath.Join(f.dir, "empty_known_hosts")
		os.WriteFile(kh, nil, 0o600)
		p.KnownHosts = []string{kh}
	})
	_, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err == nil {
		t.Fatal("connected to a server with an unknown host key")
	}
	fp := ssh.FingerprintSHA256(f.srv.HostKey.PublicKey())
	for _, want := range []string{"host key of 127.0.0.1:", "is unknown", fp, "ssh-keyscan -p"} {
		if !strings.Contains(explanation(t, err), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	var hke *HostKeyError
	if !errors.As(err, &hke) {
		t.Errorf("error is not a *HostKeyError: %T", err)
	}
	if n := f.srv.Logins.Load(); n != 0 {
		t.Errorf("%d logins despite the refused host key", n)
	}
}

func TestChangedHostKeyRefused(t *testing.T) {
	f := newFixture(t)
	other := brokertest.NewKey(t)
	kh := filepath.Join(f.dir, "changed_known_hosts")
	line := strings.Replace(f.srv.KnownHostsLine(), string(ssh.MarshalAuthorizedKey(f.srv.HostKey.PublicKey())), string(ssh.MarshalAuthorizedKey(other.PublicKey())), 1)
	os.WriteFile(kh, []byte("# comment\n"+line), 0o600)
	b := f.broker(t, func(p *Profile, _ *Options) { p.KnownHosts = []string{kh} })
	_, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err == nil {
		t.Fatal("connected despite a changed host key")
	}
	for _, want := range []string{
		"has CHANGED",
		ssh.FingerprintSHA256(other.PublicKey()),
		ssh.FingerprintSHA256(f.srv.HostKey.PublicKey()),
		kh + ":2",
	} {
		if !strings.Contains(explanation(t, err), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestChannelRefusals(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	// Nothing listens on the target.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	_, err := b.Dial(context.Background(), "gw", dead)
	var ce *ChannelError
	if !errors.As(err, &ce) || ce.Err.Reason != ssh.ConnectionFailed || !strings.Contains(err.Error(), "could not connect to "+dead) {
		t.Fatalf("dial to a closed port: %v", err)
	}
	f.srv.ForbidForwarding.Store(true)
	_, err = b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "server forbids TCP forwarding") {
		t.Fatalf("dial with forwarding forbidden: %v", err)
	}
}

func TestAgentAuth(t *testing.T) {
	f := newFixture(t)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: f.priv}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(f.dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go agent.ServeAgent(keyring, c)
		}
	}()
	b := f.broker(t, func(p *Profile, o *Options) {
		p.IdentityFiles = []string{filepath.Join(f.dir, "does-not-exist")}
		o.AgentSocket = sock
	})
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "via agent")
	// The agent is never forwarded: that takes a session channel, and
	// shunt opens none.
	for _, a := range f.srv.Asked() {
		if a != "channel direct-tcpip" {
			t.Errorf("the client asked the server for %q", a)
		}
	}
}

func TestNoKeys(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t, func(p *Profile, _ *Options) { p.IdentityFiles = []string{filepath.Join(f.dir, "missing")} })
	_, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err == nil || !strings.Contains(explanation(t, err), "identity file") {
		t.Fatalf("err = %v, want a missing identity file", err)
	}
}
