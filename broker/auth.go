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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/shunt-dev/shunt/internal/errs"
)

// promptTimeout bounds how long a connection attempt waits for the user.
const promptTimeout = 5 * time.Minute

// defaultIdentityFiles are tried, as OpenSSH does, when a profile names no
// identity file. Only those that exist are read.
var defaultIdentityFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// handshake is the state of one login: a timer that closes the transport
// if the login takes too long (paused while the user answers), what the
// user typed, and what was tried, for the error if the server refuses it
// all. A timer, not a deadline: the transport through a jump host is an
// SSH channel, which has no deadlines.
type handshake struct {
	link     *link
	attempt  *attempt
	conn     *watchedConn
	server   string
	route    string // how the server is reached: "direct", "via ..."
	deadline time.Duration
	timer    *time.Timer
	expired  atomic.Bool

	// hostKey is the server's host key once accepted (keyLabel).
	hostKey string

	agentConn     net.Conn
	passwordTries int
	usedPassword  string

	// The methods, in the profile's order, and what became of them. x/crypto
	// calls everything below from the goroutine of the handshake.
	methods   []ssh.AuthMethod
	names     []string
	allowed   []string         // the methods the server last said can continue
	attempts  []string         // the methods tried, in order
	keys      []string         // the keys publickey offered, described
	skipped   []string         // identity files that could not be used
	agentNote string           // why the agent offered no key, if it did not
	failed    map[string]error // a method's own failure (nobody to ask, ...)
	kbdRounds int              // keyboard-interactive questions put to the user
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

// ask puts a question to the user, with the handshake's clock stopped and
// the link waiting-for-auth.
func (h *handshake) ask(q Question) (string, error) {
	pr := h.link.pool.b.opts.Prompter
	if pr == nil {
		return "", fmt.Errorf("shunt needs %s for %s but has nobody to ask: run it in a terminal or set SSH_ASKPASS", q.Kind, h.server)
	}
	q.Profile, q.Server, q.Abandoned = h.link.pool.name, h.server, h.attempt.abandoned
	h.pause()
	defer h.resume()
	h.link.setAsking(1)
	defer h.link.setAsking(-1)
	ctx, cancel := context.WithTimeout(h.link.pool.b.ctx, promptTimeout)
	defer cancel()
	ans, err := pr.Ask(ctx, q)
	if err != nil {
		select {
		case <-h.attempt.abandoned:
			h.attempt.withdrawn.Store(true)
		default:
		}
	}
	return ans, err
}

// authMethods returns the profile's methods in its order; nextMethod
// chooses among them. release closes the agent connection once the
// handshake is over.
func (h *handshake) authMethods() ([]ssh.AuthMethod, func()) {
	h.failed = map[string]error{}
	for _, m := range h.link.pool.p.AuthMethods {
		switch m {
		case AuthPublicKey:
			h.methods = append(h.methods, ssh.PublicKeysCallback(h.signers))
		case AuthKeyboardInteractive:
			h.methods = append(h.methods, ssh.RetryableAuthMethod(ssh.KeyboardInteractive(h.challenge), 3))
		case AuthPassword:
			h.methods = append(h.methods, ssh.RetryableAuthMethod(ssh.PasswordCallback(h.password), 3))
		default:
			continue
		}
		h.names = append(h.names, m)
	}
	return h.methods, func() {
		if h.agentConn != nil {
			h.agentConn.Close()
		}
	}
}

// nextMethod is the ssh.ClientAuthCallback: it picks, as x/crypto would,
// the profile's first method that the server allows and that has not been
// tried, and when none is left, returns a *LoginError that says what was
// tried. x/crypto would return the last method's error instead: for a
// server that offers keyboard-interactive but has nothing to ask (OpenSSH
// without PAM, or a user it does not know), that is "unexpected message
// type 51 (expected 60)", its USERAUTH_FAILURE where x/crypto wanted an
// INFO_REQUEST, and the refused keys go unmentioned.
func (h *handshake) nextMethod(ctx *ssh.ClientAuthContext) (ssh.AuthMethod, error) {
	h.allowed = ctx.AllowedMethods
	if h.conn.failed.Load() {
		// The last method failed because the connection did (or the
		// login deadline closed it): nothing was refused.
		return nil, errors.New("the connection closed during the login")
	}
	for i, name := range h.names {
		if !slices.Contains(ctx.TriedMethods, name) && slices.Contains(ctx.AllowedMethods, name) {
			h.attempts = append(h.attempts, name)
			return h.methods[i], nil
		}
	}
	return nil, h.loginError(nil)
}

// refusal turns a failed handshake's error into a *LoginError when the
// login had begun: the one nextMethod returned, or the server's disconnect
// in the middle of it (sshd's "Too many authentication failures"). Other
// errors are returned as they are.
func (h *handshake) refusal(err error) error {
	var le *LoginError
	if errors.As(err, &le) {
		return le
	}
	if h.allowed != nil && strings.Contains(err.Error(), "ssh: disconnect, reason") {
		if u := errors.Unwrap(err); u != nil {
			err = u // without "ssh: handshake failed"
		}
		return h.loginError(err)
	}
	return err
}

// loginError describes the login's failure; cause is the server's
// disconnect, if it ended the login.
func (h *handshake) loginError(cause error) *LoginError {
	p := h.link.pool.p
	le := &LoginError{User: p.User, Server: h.server, Route: h.route, Allowed: h.allowed, Configured: p.AuthMethods, Cause: cause}
	for i, m := range h.attempts {
		le.Tried = append(le.Tried, h.outcome(m, cause != nil && i == len(h.attempts)-1))
	}
	le.agent = h.link.pool.b.opts.AgentSocket != "" && h.agentNote == ""
	return le
}

// outcome describes what became of one method; cut means the server ended
// the login during it.
func (h *handshake) outcome(method string, cut bool) Attempt {
	err := h.failed[method]
	a := Attempt{Method: method, Refused: err == nil}
	switch method {
	case AuthPublicKey:
		if len(h.keys) == 0 {
			a.Refused = false
			a.Text = "publickey had no key to offer"
		} else {
			a.Text = "publickey with " + strings.Join(h.keys, ", ")
			if err == nil && !cut {
				a.Text += " refused"
			}
		}
		a.Keys = h.keys
		var notes []string
		if err != nil {
			notes = append(notes, errs.OneLine(err.Error()))
		}
		notes = append(notes, h.skipped...)
		if h.agentNote != "" {
			notes = append(notes, h.agentNote)
		}
		if len(notes) > 0 {
			a.Text += " (" + strings.Join(notes, "; ") + ")"
		}
	case AuthKeyboardInteractive:
		switch {
		case err != nil:
			a.Text = "keyboard-interactive: " + errs.OneLine(err.Error())
		case h.kbdRounds == 0:
			a.Text = "keyboard-interactive refused without asking anything"
		default:
			a.Text = "keyboard-interactive answers refused"
		}
	case AuthPassword:
		switch {
		case err != nil:
			a.Text = "password: " + errs.OneLine(err.Error())
		case h.passwordTries == 1:
			a.Text = "password refused"
		default:
			a.Text = fmt.Sprintf("password refused %d times", h.passwordTries)
		}
	}
	return a
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
	if err != nil {
		h.failed[AuthPassword] = err
	}
	h.usedPassword = pw
	return pw, err
}

func (h *handshake) challenge(name, instruction string, questions []string, echos []bool) ([]string, error) {
	h.kbdRounds++
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
			h.failed[AuthKeyboardInteractive] = err
			return nil, err
		}
		answers[i] = a
	}
	return answers, nil
}

// offer is a key for public-key authentication, and how errors name it.
type offer struct {
	s    ssh.Signer
	desc string
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
		home := h.link.pool.b.opts.Home
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		if home != "" {
			for _, f := range defaultIdentityFiles {
				files = append(files, filepath.Join(home, ".ssh", f))
			}
		}
	}
	var keys []offer
	var skipped []error
	for _, f := range files {
		s, err := h.identity(f)
		if err != nil {
			if explicit || !errors.Is(err, os.ErrNotExist) {
				skipped = append(skipped, err)
			}
			continue
		}
		keys = append(keys, offer{s, "identity file " + f + " (" + keyLabel(s.PublicKey()) + ")"})
	}
	agentKeys := h.agentKeys()
	if p.IdentitiesOnly {
		only := onlyKeysOf(agentKeys, keys)
		if n := len(agentKeys) - len(only); n > 0 {
			h.agentNote = fmt.Sprintf("identities_only left out %d agent key(s)", n)
		}
		agentKeys = only
	}
	certs := h.certificates(files, append(append([]offer{}, keys...), agentKeys...))
	all := append(append(certs, agentKeys...), keys...)
	for _, err := range skipped {
		log.WithError(err).Warn("identity file skipped")
		h.skipped = append(h.skipped, "skipped "+errs.OneLine(err.Error()))
	}
	h.keys = nil
	var signers []ssh.Signer
	for _, o := range all {
		signers = append(signers, o.s)
		h.keys = append(h.keys, o.desc)
	}
	if len(all) == 0 {
		if len(skipped) > 0 {
			return nil, errs.Join(skipped...)
		}
		return nil, errors.New("no key to log in with: name identity_files in the profile or run an ssh-agent (SSH_AUTH_SOCK)")
	}
	return signers, nil
}

// agentKeys lists the ssh-agent's keys, named by their comments; when
// there are none, agentNote says why.
func (h *handshake) agentKeys() []offer {
	log := h.link.log
	sock := h.link.pool.b.opts.AgentSocket
	if sock == "" {
		h.agentNote = "no ssh-agent: SSH_AUTH_SOCK is not set"
		return nil
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		log.WithError(err).Warn("ssh-agent (SSH_AUTH_SOCK) unreachable; using identity files only")
		h.agentNote = "ssh-agent unreachable: " + errs.OneLine(err.Error())
		return nil
	}
	h.agentConn = c
	ac := agent.NewClient(c)
	list, err := ac.List()
	var signers []ssh.Signer
	if err == nil {
		signers, err = ac.Signers()
	}
	if err != nil {
		log.WithError(err).Warn("ssh-agent did not list its keys")
		h.agentNote = "the ssh-agent did not list its keys: " + errs.OneLine(err.Error())
		return nil
	}
	if len(signers) == 0 {
		h.agentNote = "the ssh-agent holds no key"
		return nil
	}
	comments := map[string]string{}
	for _, k := range list {
		comments[string(k.Blob)] = k.Comment
	}
	var out []offer
	for _, s := range signers {
		desc := "agent key (" + keyLabel(s.PublicKey()) + ")"
		if c := comments[string(s.PublicKey().Marshal())]; c != "" {
			desc = fmt.Sprintf("agent key %q (%s)", c, keyLabel(s.PublicKey()))
		}
		out = append(out, offer{s, desc})
	}
	return out
}

// keyLabel names a key as OpenSSH's messages do: "ED25519 SHA256:...";
// a certificate by its key's fingerprint, "ED25519-CERT SHA256:...".
func keyLabel(k ssh.PublicKey) string {
	if c, ok := k.(*ssh.Certificate); ok {
		return keyName(c.Key) + "-CERT " + ssh.FingerprintSHA256(c.Key)
	}
	return keyName(k) + " " + ssh.FingerprintSHA256(k)
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
		s, err := h.decrypt(file, data)
		if err != nil {
			h.failed[AuthPublicKey] = err
		}
		return s, err
	}}, nil
}

// decrypt asks for an encrypted key's passphrase, up to three times.
func (h *handshake) decrypt(file string, data []byte) (ssh.Signer, error) {
	pl := h.link.pool
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
}

// certificates pairs certificate files with the keys they certify:
// "FILE-cert.pub" beside each identity file, and the profile's
// certificate files.
func (h *handshake) certificates(files []string, keys []offer) []offer {
	p := h.link.pool.p
	var certFiles []string
	for _, f := range files {
		certFiles = append(certFiles, f+"-cert.pub")
	}
	certFiles = append(certFiles, p.CertificateFiles...)
	var out []offer
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
			if string(k.s.PublicKey().Marshal()) == string(cert.Key.Marshal()) {
				if cs, err := ssh.NewCertSigner(cert, k.s); err == nil {
					principals := "no principals"
					if len(cert.ValidPrincipals) > 0 {
						principals = "principals " + strings.Join(cert.ValidPrincipals, ",")
					}
					out = append(out, offer{cs, fmt.Sprintf("certificate %s (%s, %s)", cf, keyLabel(cert), principals)})
				}
				break
			}
		}
	}
	return out
}

func onlyKeysOf(agentKeys, identities []offer) []offer {
	var out []offer
	for _, a := range agentKeys {
		for _, k := range identities {
			if string(a.s.PublicKey().Marshal()) == string(k.s.PublicKey().Marshal()) {
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

// LoginError is a login that failed once the server had said which
// methods it allows: it refused every method the profile has (a user it
// does not know looks the same as keys it does not accept), or a method
// could not be used here (no key, nobody to ask for a password). Its text
// is one line and holds no secret.
type LoginError struct {
	User   string
	Server string // host:port, as dialled
	Route  string // how it was reached: "direct", "via jump profile bastion"
	// Allowed are the methods the server said can continue; Configured
	// are the profile's, in its order.
	Allowed, Configured []string
	// Tried are the methods tried, in order.
	Tried []Attempt
	// Cause is the server's disconnect, when it ended the login itself.
	Cause error

	agent bool // an ssh-agent was asked for keys
}

// Attempt is one authentication method tried.
type Attempt struct {
	Method string
	// Refused is true when the server refused the method, false when it
	// failed here (no key to offer, nobody to ask).
	Refused bool
	// Keys are the keys publickey offered: the file or the agent key's
	// comment, with type and fingerprint.
	Keys []string
	// Text describes the attempt.
	Text string
}

func (e *LoginError) refused() bool {
	for _, a := range e.Tried {
		if a.Refused {
			return true
		}
	}
	return e.Cause != nil
}

func (e *LoginError) where() string {
	if e.Route == "" {
		return e.Server
	}
	return e.Server + " (" + e.Route + ")"
}

func (e *LoginError) Error() string {
	var b strings.Builder
	switch {
	case len(e.Tried) == 0 && e.Cause == nil:
		fmt.Fprintf(&b, "SSH server %s allows none of the profile's methods for the login as %q: it allows %s, the profile's auth_methods are %s",
			e.where(), e.User, strings.Join(e.Allowed, ", "), strings.Join(e.Configured, ", "))
		return errs.OneLine(b.String())
	case e.refused():
		fmt.Fprintf(&b, "SSH server %s refused the login as %q: ", e.where(), e.User)
	default:
		fmt.Fprintf(&b, "SSH login as %q to %s failed: ", e.User, e.where())
	}
	var tried []string
	var keysRefused, noKey, passwordRefused, publickey bool
	for _, a := range e.Tried {
		tried = append(tried, a.Text)
		switch {
		case a.Method == AuthPublicKey:
			publickey = true
			keysRefused = keysRefused || a.Refused && len(a.Keys) > 0
			noKey = noKey || len(a.Keys) == 0
		case a.Method == AuthPassword && a.Refused:
			passwordRefused = true
		}
	}
	if len(tried) == 0 {
		tried = append(tried, "no method was tried")
	}
	b.WriteString(strings.Join(tried, "; "))
	if e.Cause != nil {
		b.WriteString("; then the server ended the login: " + e.Cause.Error())
	}
	if len(e.Allowed) > 0 {
		b.WriteString("; the server allows " + strings.Join(e.Allowed, ", "))
	}
	var check []string
	if e.refused() {
		check = append(check, fmt.Sprintf("the user name (%q)", e.User))
	}
	if keysRefused {
		check = append(check, "that one of these keys is in that user's authorized_keys on the server")
	}
	if publickey && e.agent {
		check = append(check, "the agent's keys (ssh-add -l)")
	}
	if noKey {
		check = append(check, "identity_files in the profile (or run an ssh-agent)")
	}
	if passwordRefused {
		check = append(check, "the password")
	}
	if e.Cause != nil && strings.Contains(strings.ToLower(e.Cause.Error()), "too many authentication failures") {
		check = append(check, "that the right key comes among the first the server counts (its MaxAuthTries): name it in identity_files, with identities_only")
	}
	if len(check) > 0 {
		b.WriteString(". Check ")
		if len(check) > 1 {
			b.WriteString(strings.Join(check[:len(check)-1], ", ") + " and ")
		}
		b.WriteString(check[len(check)-1])
	}
	return errs.OneLine(b.String())
}

// brief is the short form for the flows the failure refuses.
func (e *LoginError) brief(ref string) string {
	switch {
	case len(e.Tried) == 0 && e.Cause == nil:
		return fmt.Sprintf("SSH server %s allows none of the profile's methods for the login as %q (%s)", e.Server, e.User, ref)
	case e.refused():
		return fmt.Sprintf("SSH server %s refused the login as %q (%s)", e.Server, e.User, ref)
	}
	return fmt.Sprintf("SSH login as %q to %s failed (%s)", e.User, e.Server, ref)
}
