package broker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// promptTimeout bounds how long a connection attempt waits for the user.
const promptTimeout = 5 * time.Minute

// defaultIdentityFiles are tried, as OpenSSH does, when a profile names no
// identity file. Only those that exist are read.
var defaultIdentityFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// handshake is the state of one login: a timer that closes the transport
// if the login takes too long (paused while the user answers), and what
// the user typed. A timer, not a deadline: the transport through a jump
// host is an SSH channel, which has no deadlines.
type handshake struct {
	link     *link
	conn     net.Conn
	server   string
	deadline time.Duration
	timer    *time.Timer
	expired  atomic.Bool

	agentConn     net.Conn
	passwordTries int
	usedPassword  string
}

// resume (re)starts the login clock.
func (h *handshake) resume() {
	if h.timer == nil {
		h.timer = time.AfterFunc(h.deadline, func() {
			h.expired.Store(true)
			h.conn.Close()
		})
		return
	}
	h.timer.Reset(h.deadline)
}

// pause stops the login clock while the user is asked something.
func (h *handshake) pause() { h.timer.Stop() }

// finish stops the clock for good; it reports false if it had already run
// out (and closed the transport).
func (h *handshake) finish() bool {
	h.timer.Stop()
	return !h.expired.Load()
}

// ask puts a question to the user, with the handshake's clock stopped.
func (h *handshake) ask(q Question) (string, error) {
	pr := h.link.pool.b.opts.Prompter
	if pr == nil {
		return "", fmt.Errorf("shunt needs %s for %s but has nobody to ask: run it in a terminal or set SSH_ASKPASS", q.Kind, h.server)
	}
	q.Profile, q.Server = h.link.pool.p.Name, h.server
	h.pause()
	defer h.resume()
	ctx, cancel := context.WithTimeout(context.Background(), promptTimeout)
	defer cancel()
	return pr.Ask(ctx, q)
}

// authMethods returns the profile's methods in its order. release closes
// the agent connection once the handshake is over.
func (h *handshake) authMethods() ([]ssh.AuthMethod, func()) {
	var methods []ssh.AuthMethod
	for _, m := range h.link.pool.p.AuthMethods {
		switch m {
		case AuthPublicKey:
			methods = append(methods, ssh.PublicKeysCallback(h.signers))
		case AuthKeyboardInteractive:
			methods = append(methods, ssh.RetryableAuthMethod(ssh.KeyboardInteractive(h.challenge), 3))
		case AuthPassword:
			methods = append(methods, ssh.RetryableAuthMethod(ssh.PasswordCallback(h.password), 3))
		}
	}
	return methods, func() {
		if h.agentConn != nil {
			h.agentConn.Close()
		}
	}
}

// remember keeps, for reconnects, the password that just worked.
func (h *handshake) remember() {
	if h.usedPassword != "" {
		pl := h.link.pool
		pl.secretsMu.Lock()
		pl.password = h.usedPassword
		pl.secretsMu.Unlock()
	}
}

func (h *handshake) password() (string, error) {
	pl := h.link.pool
	h.passwordTries++
	if h.passwordTries == 1 {
		pl.secretsMu.Lock()
		pw := pl.password
		pl.secretsMu.Unlock()
		if pw != "" {
			h.usedPassword = pw
			return pw, nil
		}
	}
	pw, err := h.ask(Question{Kind: Password, Text: fmt.Sprintf("%s@%s's password: ", pl.p.User, h.server)})
	h.usedPassword = pw
	return pw, err
}

func (h *handshake) challenge(name, instruction string, questions []string, echos []bool) ([]string, error) {
	answers := make([]string, len(questions))
	for i, q := range questions {
		text := q
		if i == 0 && instruction != "" {
			text = instruction + "\n" + q
		}
		if i == 0 && name != "" {
			text = name + "\n" + text
		}
		a, err := h.ask(Question{Kind: Challenge, Text: text, Echo: echos[i]})
		if err != nil {
			return nil, err
		}
		answers[i] = a
	}
	return answers, nil
}

// signers gathers the keys for public-key authentication: certificates
// first, then the agent's keys (as OpenSSH does), then the identity files.
// An encrypted key is decrypted (asking for its passphrase) only when the
// server has accepted its public key.
func (h *handshake) signers() ([]ssh.Signer, error) {
	p := h.link.pool.p
	log := h.link.log
	files := p.IdentityFiles
	explicit := len(files) > 0
	if !explicit {
		if home, err := os.UserHomeDir(); err == nil {
			for _, f := range defaultIdentityFiles {
				files = append(files, filepath.Join(home, ".ssh", f))
			}
		}
	}
	var keys []ssh.Signer
	var errs []error
	for _, f := range files {
		s, err := h.identity(f)
		if err != nil {
			if explicit || !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		keys = append(keys, s)
	}
	var agentKeys []ssh.Signer
	if sock := h.link.pool.b.opts.AgentSocket; sock != "" {
		c, err := net.Dial("unix", sock)
		if err != nil {
			log.WithError(err).Warn("ssh-agent (SSH_AUTH_SOCK) unreachable; using identity files only")
		} else {
			h.agentConn = c
			s, err := agent.NewClient(c).Signers()
			if err != nil {
				log.WithError(err).Warn("ssh-agent did not list its keys")
			}
			agentKeys = s
		}
	}
	if p.IdentitiesOnly {
		agentKeys = onlyKeysOf(agentKeys, keys)
	}
	certs := h.certificates(files, append(append([]ssh.Signer{}, keys...), agentKeys...))
	all := append(append(certs, agentKeys...), keys...)
	for _, err := range errs {
		log.WithError(err).Warn("identity file skipped")
	}
	if len(all) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, errors.New("no key to log in with: name identity_files in the profile or run an ssh-agent (SSH_AUTH_SOCK)")
	}
	return all, nil
}

// identity loads one private key file. An encrypted key becomes a signer
// that asks for the passphrase when it first signs; a key decrypted once
// is remembered for reconnects.
func (h *handshake) identity(file string) (ssh.Signer, error) {
	pl := h.link.pool
	pl.secretsMu.Lock()
	s, ok := pl.keys[file]
	pl.secretsMu.Unlock()
	if ok {
		return s, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", file, err)
	}
	s, err = ssh.ParsePrivateKey(data)
	if err == nil {
		return s, nil
	}
	var missing *ssh.PassphraseMissingError
	if !errors.As(err, &missing) {
		return nil, fmt.Errorf("identity file %s: %w", file, err)
	}
	pub := missing.PublicKey
	if pub == nil {
		// Old PEM files encrypt the public key too: take it from FILE.pub.
		if b, err := os.ReadFile(file + ".pub"); err == nil {
			pub, _, _, _, _ = ssh.ParseAuthorizedKey(b)
		}
	}
	if pub == nil {
		return nil, fmt.Errorf("identity file %s is encrypted and has no public key beside it (%s.pub)", file, file)
	}
	return &lazySigner{pub: pub, load: func() (ssh.Signer, error) {
		for try := 0; try < 3; try++ {
			pw, err := h.ask(Question{Kind: Passphrase, Text: fmt.Sprintf("Enter passphrase for key '%s': ", file)})
			if err != nil {
				return nil, err
			}
			s, err := ssh.ParsePrivateKeyWithPassphrase(data, []byte(pw))
			if err == nil {
				pl.secretsMu.Lock()
				pl.keys[file] = s
				pl.secretsMu.Unlock()
				return s, nil
			}
			if !errors.Is(err, x509.IncorrectPasswordError) {
				return nil, fmt.Errorf("identity file %s: %w", file, err)
			}
			h.link.log.WithField("identity_file", file).Warn("wrong passphrase")
		}
		return nil, fmt.Errorf("identity file %s: wrong passphrase, three times", file)
	}}, nil
}

// certificates pairs certificate files with the keys they certify:
// "FILE-cert.pub" beside each identity file, and the profile's
// certificate files.
func (h *handshake) certificates(files []string, keys []ssh.Signer) []ssh.Signer {
	p := h.link.pool.p
	var certFiles []string
	for _, f := range files {
		certFiles = append(certFiles, f+"-cert.pub")
	}
	certFiles = append(certFiles, p.CertificateFiles...)
	var out []ssh.Signer
	for _, cf := range certFiles {
		b, err := os.ReadFile(cf)
		if err != nil {
			continue
		}
		pk, _, _, _, err := ssh.ParseAuthorizedKey(b)
		cert, ok := pk.(*ssh.Certificate)
		if err != nil || !ok {
			h.link.log.WithField("certificate_file", cf).Warn("not an OpenSSH certificate; skipped")
			continue
		}
		for _, k := range keys {
			if string(k.PublicKey().Marshal()) == string(cert.Key.Marshal()) {
				if cs, err := ssh.NewCertSigner(cert, k); err == nil {
					out = append(out, cs)
				}
				break
			}
		}
	}
	return out
}

func onlyKeysOf(agentKeys, identities []ssh.Signer) []ssh.Signer {
	var out []ssh.Signer
	for _, a := range agentKeys {
		for _, k := range identities {
			if string(a.PublicKey().Marshal()) == string(k.PublicKey().Marshal()) {
				out = append(out, a)
				break
			}
		}
	}
	return out
}

// lazySigner is an encrypted key: its public key is known, its private key
// is decrypted on first use.
type lazySigner struct {
	pub  ssh.PublicKey
	load func() (ssh.Signer, error)

	mu  sync.Mutex
	s   ssh.Signer
	err error
}

func (l *lazySigner) get() (ssh.Signer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil && l.err == nil {
		l.s, l.err = l.load()
	}
	return l.s, l.err
}

func (l *lazySigner) PublicKey() ssh.PublicKey { return l.pub }

func (l *lazySigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Sign(rand, data)
}

func (l *lazySigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	if as, ok := s.(ssh.AlgorithmSigner); ok {
		return as.SignWithAlgorithm(rand, data, algorithm)
	}
	return s.Sign(rand, data)
}

// Algorithms lists what the key can sign with, known before decryption.
func (l *lazySigner) Algorithms() []string {
	if l.pub.Type() == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{l.pub.Type()}
}

var _ ssh.MultiAlgorithmSigner = (*lazySigner)(nil)
