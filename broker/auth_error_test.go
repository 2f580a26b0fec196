package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/state"
)

// explanation is the whole text of the connection attempt's failure
// under a flow's error (which refers to it briefly).
func explanation(t *testing.T, err error) string {
	t.Helper()
	var se *SetupError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v (%T), want a *SetupError", err, err)
	}
	return se.Err.Error()
}

// loginServer is an x/crypto SSH server that logs in as a stock OpenSSH
// sshd without PAM does: it offers publickey and keyboard-interactive,
// and answers a keyboard-interactive request with USERAUTH_FAILURE at
// once, asking nothing. It knows one user.
type loginServer struct {
	port    int
	hostKey ssh.Signer
	ln      net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

type loginServerOptions struct {
	user     string          // the only user it lets in
	keys     []ssh.PublicKey // that user's authorized keys
	password string          // enables password authentication
	maxTries int             // MaxAuthTries; 0 is x/crypto's 6
}

func newLoginServer(t *testing.T, o loginServerOptions) *loginServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &loginServer{port: ln.Addr().(*net.TCPAddr).Port, hostKey: brokertest.NewKey(t), ln: ln, conns: map[net.Conn]bool{}}
	cfg := &ssh.ServerConfig{
		MaxAuthTries: o.maxTries,
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range o.keys {
				if c.User() == o.user && string(k.Marshal()) == string(key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("not authorized")
		},
		KeyboardInteractiveCallback: func(ssh.ConnMetadata, ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			return nil, errors.New("no challenge for anyone")
		},
	}
	if o.password != "" {
		cfg.PasswordCallback = func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == o.user && string(pw) == o.password {
				return nil, nil
			}
			return nil, errors.New("wrong password")
		}
	}
	cfg.AddHostKey(s.hostKey)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					nc.Reject(ssh.Prohibited, "logged in; no forwarding here")
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// profile is a profile for the server, trusting its host key.
func (s *loginServer) profile(t *testing.T, user string, identityFiles ...string) Profile {
	t.Helper()
	kh := filepath.Join(t.TempDir(), "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%d %s", s.port, ssh.MarshalAuthorizedKey(s.hostKey.PublicKey()))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: s.port, User: user, KnownHosts: []string{kh}, IdentityFiles: identityFiles}
}

// serveAgent runs an ssh-agent holding keys, with their comments, on a
// socket; it stops when the test ends.
func serveAgent(t *testing.T, keys map[string]any) string {
	t.Helper()
	keyring := agent.NewKeyring()
	for comment, k := range keys {
		if err := keyring.Add(agent.AddedKey{PrivateKey: k, Comment: comment}); err != nil {
			t.Fatal(err)
		}
	}
	// A short path: a socket's must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "agent")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); agent.ServeAgent(keyring, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return sock
}

func fingerprint(s ssh.Signer) string { return ssh.FingerprintSHA256(s.PublicKey()) }

// A user the server does not know, or keys it does not accept, used to
// end in "ssh: unexpected message type 51 (expected 60)": x/crypto's
// keyboard-interactive taking the server's USERAUTH_FAILURE for a broken
// protocol. The error must say that the server refused the login as that
// user, what was tried, and what to check, on one line.
func TestLoginRefusedSaysUserMethodsAndKeys(t *testing.T) {
	dir := t.TempDir()
	rootFile, rootKey := writeKey(t, dir, "id_root", "")
	_, otherKey := writeKey(t, dir, "id_other", "")
	agentPriv := brokertest.NewPrivateKey(t)
	agentKey, _ := ssh.NewSignerFromKey(agentPriv)
	srv := newLoginServer(t, loginServerOptions{user: "root", keys: []ssh.PublicKey{rootKey.PublicKey()}})

	cases := []struct {
		name  string
		user  string
		file  string
		key   ssh.Signer
		agent bool
		want  []string
	}{
		{"unknown user", "alice", rootFile, rootKey, true, []string{
			`agent key "alice@laptop" (ED25519 ` + fingerprint(agentKey) + ")",
			"the agent's keys (ssh-add -l)",
		}},
		{"key not accepted", "root", filepath.Join(dir, "id_other"), otherKey, false, []string{
			"no ssh-agent: SSH_AUTH_SOCK is not set",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{}
			if tc.agent {
				opts.AgentSocket = serveAgent(t, map[string]any{"alice@laptop": agentPriv})
			}
			log, hook := test.NewNullLogger()
			opts.Log = log
			b := newBroker(t, opts, srv.profile(t, tc.user, tc.file))
			_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
			if err == nil {
				t.Fatal("logged in")
			}
			if strings.Contains(err.Error(), "unexpected message") {
				t.Fatalf("err = %v", err)
			}
			var le *LoginError
			if !errors.As(err, &le) {
				t.Fatalf("err = %v (%T), want a *LoginError", err, err)
			}
			full := explanation(t, err)
			want := append([]string{
				fmt.Sprintf("profile gw: SSH server 127.0.0.1:%d (direct) refused the login as %q: ", srv.port, tc.user),
				"publickey with ",
				"identity file " + tc.file + " (ED25519 " + fingerprint(tc.key) + ")",
				"keyboard-interactive refused without asking anything",
				"the server allows publickey, keyboard-interactive",
				fmt.Sprintf("Check the user name (%q)", tc.user),
				"that one of these keys is in that user's authorized_keys on the server",
			}, tc.want...)
			for _, w := range want {
				if !strings.Contains(full, w) {
					t.Errorf("error does not say %q:\n%s", w, full)
				}
			}
			if strings.ContainsAny(full, "\n\r") {
				t.Errorf("error is not one line: %q", full)
			}
			// The flow's error is short and points at the attempt's log
			// line, which has the whole explanation.
			brief := fmt.Sprintf("profile gw: SSH server 127.0.0.1:%d refused the login as %q (see the error logged at ", srv.port, tc.user)
			if !strings.HasPrefix(err.Error(), brief) {
				t.Errorf("flow's error = %q, want it to start %q", err, brief)
			}
			var logged []string
			for _, e := range hook.AllEntries() {
				if e.Message == "SSH connection failed" {
					logged = append(logged, fmt.Sprint(e.Data[logrus.ErrorKey]))
				}
			}
			if len(logged) != 1 || logged[0] != full {
				t.Errorf("logged %q, want the whole explanation once", logged)
			}
		})
	}

	t.Run("the right user still gets in", func(t *testing.T) {
		b := newBroker(t, Options{}, srv.profile(t, "root", rootFile))
		_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
		var ce *ChannelError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v, want the server's refusal of the channel, after the login", err)
		}
	})
}

// The password that was refused, and a passphrase, never reach the error
// or the log.
func TestLoginRefusedKeepsSecrets(t *testing.T) {
	dir := t.TempDir()
	encFile, encKey := writeKey(t, dir, "id_enc", "passphrase-sekrit")
	srv := newLoginServer(t, loginServerOptions{user: "root", password: "right-pw", keys: []ssh.PublicKey{encKey.PublicKey()}})
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	pr := answers(map[QuestionKind]string{Password: "wrong-pw-sekrit", Passphrase: "passphrase-sekrit"})
	b := newBroker(t, Options{Log: log, Prompter: pr}, srv.profile(t, "alice", encFile))
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	if err == nil {
		t.Fatal("logged in")
	}
	full := explanation(t, err)
	for _, w := range []string{`refused the login as "alice"`, "password refused 3 times", "Check the user name", "the password"} {
		if !strings.Contains(full, w) {
			t.Errorf("error does not say %q:\n%s", w, full)
		}
	}
	text := full
	for _, e := range hook.AllEntries() {
		s, _ := e.String()
		text += s
	}
	for _, secret := range []string{"wrong-pw-sekrit", "passphrase-sekrit", "right-pw"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q appears in the error or the log", secret)
		}
	}
	if pr.count(Passphrase) != 0 {
		t.Errorf("asked for the passphrase of a key the server refused for alice")
	}
}

// A server that ends the login itself (sshd's MaxAuthTries) gets the same
// account of what was tried, and what to do.
func TestLoginEndedByServerNamesKeys(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for i := range 4 {
		f, _ := writeKey(t, dir, fmt.Sprintf("id_%d", i), "")
		files = append(files, f)
	}
	srv := newLoginServer(t, loginServerOptions{user: "root", maxTries: 2})
	b := newBroker(t, Options{}, srv.profile(t, "root", files...))
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	var le *LoginError
	if !errors.As(err, &le) || le.Cause == nil {
		t.Fatalf("err = %v, want a *LoginError with the server's disconnect", err)
	}
	full := explanation(t, err)
	for _, w := range []string{`refused the login as "root"`, files[0], "then the server ended the login", "too many authentication failures", "MaxAuthTries"} {
		if !strings.Contains(full, w) {
			t.Errorf("error does not say %q:\n%s", w, full)
		}
	}
}

// A server that allows none of the profile's methods says so.
func TestLoginNoCommonMethod(t *testing.T) {
	srv := newLoginServer(t, loginServerOptions{user: "root"})
	p := srv.profile(t, "root")
	p.AuthMethods = []string{AuthPassword}
	b := newBroker(t, Options{}, p)
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	if err == nil {
		t.Fatal("logged in")
	}
	full := explanation(t, err)
	want := "allows none of the profile's methods for the login as \"root\": it allows publickey, keyboard-interactive, the profile's auth_methods are password"
	if !strings.Contains(full, want) {
		t.Errorf("error = %q, want it to say %q", full, want)
	}
}

// Errors are logged as quoted values: a newline in one shows as a literal
// \n. Two hosts that both fail made an errors.Join of two lines.
func TestConnectionErrorsAreOneLine(t *testing.T) {
	srv := brokertest.New(t)
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	// Nothing listens on 127.0.0.2 (the server is on 127.0.0.1).
	p := Profile{Name: "gw", Hosts: []string{"127.0.0.2", "127.0.0.1"}, Port: srv.Port(), User: "alice", KnownHosts: []string{kh},
		IdentityFiles: []string{filepath.Join(dir, "missing-1"), filepath.Join(dir, "missing-2")}}
	log, hook := test.NewNullLogger()
	b := newBroker(t, Options{Log: log}, p)
	_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
	if err == nil {
		t.Fatal("connected")
	}
	texts := []string{err.Error(), explanation(t, err)}
	for _, e := range hook.AllEntries() {
		if err, ok := e.Data[logrus.ErrorKey].(error); ok {
			texts = append(texts, err.Error())
		}
	}
	for _, s := range texts {
		if strings.ContainsAny(s, "\n\r") {
			t.Errorf("error is not one line: %q", s)
		}
	}
	full := explanation(t, err)
	for _, w := range []string{"connect to SSH server 127.0.0.2:", "host key of 127.0.0.1:"} {
		if !strings.Contains(full, w) {
			t.Errorf("error %q does not name %q", full, w)
		}
	}
	var hke *HostKeyError
	if !errors.As(err, &hke) {
		t.Errorf("the joined error hides the *HostKeyError")
	}
}

// N flows refused by one unknown host key: the long explanation is logged
// once per connection attempt, and each flow's error refers to it in a few
// words, with the time of that log line.
func TestHostKeyExplainedOncePerAttempt(t *testing.T) {
	srv := brokertest.New(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, nil, 0o600)
	p := Profile{Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice", KnownHosts: []string{kh}}
	log, hook := test.NewNullLogger()
	b := newBroker(t, Options{Log: log}, p)
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.Dial(context.Background(), "gw", "10.0.0.1:25")
		}()
	}
	wg.Wait()
	// And some more while the link backs off.
	for range 5 {
		_, err := b.Dial(context.Background(), "gw", "10.0.0.1:25")
		errs = append(errs, err)
	}

	long := "If that fingerprint is right, add it with: ssh-keyscan -p"
	var attempts []time.Time
	for _, e := range hook.AllEntries() {
		text := fmt.Sprint(e.Data[logrus.ErrorKey])
		if e.Message == "SSH connection failed" {
			if !strings.Contains(text, long) {
				t.Errorf("the attempt's log line lacks the explanation: %q", text)
			}
			attempts = append(attempts, e.Time)
		} else if strings.Contains(text, long) {
			t.Errorf("explained again in %q: %q", e.Message, text)
		}
	}
	if len(attempts) == 0 {
		t.Fatal("no connection attempt was logged")
	}
	ref := regexp.MustCompile(fmt.Sprintf(`^profile gw: host key of 127\.0\.0\.1:%d is unknown \(see the error logged at (\d\d:\d\d:\d\d)\)`, srv.Port()))
	for i, err := range errs {
		if err == nil {
			t.Fatalf("flow %d connected", i)
		}
		m := ref.FindStringSubmatch(err.Error())
		if m == nil || strings.Contains(err.Error(), long) {
			t.Errorf("flow %d: %q, want the short reference", i, err)
			continue
		}
		// The reference is stamped as the attempt ends, just before it
		// is logged: the same second, or the one before.
		found := false
		for _, at := range attempts {
			if m[1] == at.Format("15:04:05") || m[1] == at.Add(-time.Second).Format("15:04:05") {
				found = true
			}
		}
		if !found {
			t.Errorf("flow %d refers to %s; the attempts were logged at %v", i, m[1], attempts)
		}
	}
}

// recorded keeps every event the broker publishes, as JSON.
type recorded struct {
	mu   sync.Mutex
	json []string
}

func (r *recorded) Active() bool { return true }

func (r *recorded) Publish(e state.Event) {
	b, _ := json.Marshal(e)
	r.mu.Lock()
	r.json = append(r.json, string(b))
	r.mu.Unlock()
}

// Logins that succeed, by password, by keyboard-interactive and with an
// encrypted key, logged at trace level: no secret reaches the log, the
// status or the events, at any level.
func TestSuccessfulLoginsKeepSecrets(t *testing.T) {
	const pw, code, phrase = "pw-sekrit-1", "kbd-sekrit-2", "phrase-sekrit-3"
	echo := brokertest.Echo(t)
	toEcho := func(network, _ string) (net.Conn, error) { return net.Dial(network, echo) }
	_, pwProf := server(t, brokertest.Options{Password: pw, Dial: toEcho})
	pwProf.Name, pwProf.AuthMethods = "pw", []string{AuthPassword}
	_, kbdProf := server(t, brokertest.Options{Challenge: "Verification code: ", Answer: code, Dial: toEcho})
	kbdProf.Name, kbdProf.AuthMethods = "kbd", []string{AuthKeyboardInteractive}
	keySrv, keyProf := server(t, brokertest.Options{Dial: toEcho})
	keyFile, key := writeKey(t, t.TempDir(), "id_enc", phrase)
	keySrv.Allow(key.PublicKey())
	keyProf.Name, keyProf.IdentityFiles, keyProf.AuthMethods = "key", []string{keyFile}, []string{AuthPublicKey}

	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.TraceLevel)
	ev := &recorded{}
	pr := answers(map[QuestionKind]string{Password: pw, Challenge: code, Passphrase: phrase})
	b := newBroker(t, Options{Log: log, Prompter: pr, Events: ev}, pwProf, kbdProf, keyProf)
	for _, p := range []string{"pw", "kbd", "key"} {
		mustDial(t, b, p, "10.0.0.1:25")
	}
	for _, k := range []QuestionKind{Password, Challenge, Passphrase} {
		if pr.count(k) != 1 {
			t.Errorf("asked %d times for %v, want once", pr.count(k), k)
		}
	}
	status, _ := json.Marshal(b.Status())
	conns, _ := json.Marshal(b.Connections())
	text := string(status) + string(conns)
	for _, e := range hook.AllEntries() {
		s, _ := e.String()
		text += s
	}
	ev.mu.Lock()
	text += strings.Join(ev.json, "\n")
	ev.mu.Unlock()
	if !strings.Contains(text, "SSH connection up") {
		t.Fatalf("the trace log shows no login:\n%s", text)
	}
	for _, secret := range []string{pw, code, phrase} {
		if strings.Contains(text, secret) {
			t.Errorf("%q appears in the log, the status or the events", secret)
		}
	}
}
