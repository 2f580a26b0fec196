package gateway

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"
)

func TestRun(t *testing.T) {
	echo := echoServer(t)
	dir := t.TempDir()
	client := signer(t, 1)
	keysPath := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keysPath, ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Listen = []string{"127.0.0.1:0"}
	c.HostKey = filepath.Join(dir, "host")
	c.AuthorizedKeys = keysPath
	c.Permit, _ = ParsePermit([]string{"127.0.0.1"})
	log, hook := test.NewNullLogger()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- Run(ctx, c, log) }()
	var addr, fp string
	for addr == "" {
		select {
		case err := <-ran:
			t.Fatalf("Run ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		for _, e := range hook.AllEntries() {
			if e.Message == "gateway listening" {
				addr, fp = e.Data["addr"].(string), e.Data["host_key"].(string)
			}
		}
	}
	pub, err := os.ReadFile(c.HostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil || ssh.FingerprintSHA256(hk) != fp {
		t.Fatalf("logged fingerprint %s, host key %v (%v)", fp, hk, err)
	}
	cl, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(client)}, HostKeyCallback: ssh.FixedHostKey(hk)})
	if err != nil {
		t.Fatal(err)
	}
	if err := echoThrough(t, cl, echo.String()); err != nil {
		t.Error(err)
	}
	cl.Close()

	// The file is read at each login: a key replaced takes effect at once.
	other := signer(t, 2)
	if err := os.WriteFile(keysPath, ssh.MarshalAuthorizedKey(other.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	login := func(key ssh.Signer) error {
		cl, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "u", Auth: []ssh.AuthMethod{ssh.PublicKeys(key)}, HostKeyCallback: ssh.FixedHostKey(hk)})
		if err == nil {
			cl.Close()
		}
		return err
	}
	if err := login(client); err == nil {
		t.Error("a key removed from the file still logs in")
	}
	if err := login(other); err != nil {
		t.Errorf("a key added to the file: %v", err)
	}
	// A bad file refuses everyone, and says so.
	if err := os.WriteFile(keysPath, append(ssh.MarshalAuthorizedKey(other.PublicKey()), "command=\"x\" "+string(ssh.MarshalAuthorizedKey(client.PublicKey()))...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := login(other); err == nil {
		t.Error("logged in with a bad authorized keys file")
	}
	found := false
	for _, e := range hook.AllEntries() {
		if e.Message == "refusing logins until the authorized keys file is fixed" && strings.Contains(e.Data["error"].(error).Error(), ":2: option command") {
			found = true
		}
	}
	if !found {
		t.Error("no error logged for the bad authorized keys file")
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, nil, 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	log := logrus.New()
	log.SetOutput(&strings.Builder{})
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{HostKey: "h", Listen: []string{":1"}}, "--authorized-keys"},
		{Config{AuthorizedKeys: keys, Listen: []string{":1"}}, "--host-key"},
		{Config{AuthorizedKeys: keys, HostKey: filepath.Join(dir, "h")}, "--listen"},
		{Config{AuthorizedKeys: keys + "x", HostKey: filepath.Join(dir, "h"), Listen: []string{":1"}}, "cannot read"},
		{Config{AuthorizedKeys: keys, HostKey: filepath.Join(dir, "h"), Listen: []string{busy.Addr().String()}}, "listen on"},
	} {
		if err := Run(context.Background(), tt.c, log); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%+v) = %v, want %q", tt.c, err, tt.want)
		}
	}
}
