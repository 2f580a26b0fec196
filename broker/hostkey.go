package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/shunt-dev/shunt/internal/errs"
)

// hostKeys checks server host keys against OpenSSH known_hosts files,
// strictly: an unknown or changed key refuses the connection.
type hostKeys struct {
	files    []string // the files that exist
	missing  []string // named but absent: read as empty
	callback ssh.HostKeyCallback
	// caLines are the @cert-authority lines, file → line numbers:
	// x/crypto reports them among a host's known keys, and they are not.
	caLines map[string]map[int]bool
}

func loadHostKeys(files []string) (*hostKeys, error) {
	h := &hostKeys{}
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				h.missing = append(h.missing, f)
				continue
			}
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		h.files = append(h.files, f)
	}
	h.caLines = map[string]map[int]bool{}
	for _, f := range h.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("known_hosts %s: %w", f, err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "@cert-authority") {
				if h.caLines[f] == nil {
					h.caLines[f] = map[int]bool{}
				}
				h.caLines[f][i+1] = true
			}
		}
	}
	if len(h.files) == 0 {
		h.callback = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
		return h, nil
	}
	cb, err := knownhosts.New(h.files...)
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	h.callback = cb
	return h, nil
}

// HostKeyError is the refusal of a server's host key.
type HostKeyError struct {
	Host    string // as dialled, host:port
	Offered ssh.PublicKey
	Known   []knownhosts.KnownKey // empty when the host is unknown
	Files   []string              // the files searched
	Revoked *knownhosts.RevokedError
	// Note adds what the policy did ("the user said no").
	Note string
}

func (e *HostKeyError) Error() string {
	if e.Note != "" {
		return errs.OneLine(e.message() + " (" + e.Note + ")")
	}
	return errs.OneLine(e.message())
}

// brief is the short form for the flows the refusal refuses; the
// connection attempt's log line has the whole explanation.
func (e *HostKeyError) brief(ref string) string {
	what := "is unknown"
	switch {
	case e.Revoked != nil:
		what = "is REVOKED"
	case len(e.Known) > 0:
		what = "has CHANGED"
	}
	if e.Note != "" {
		ref = errs.OneLine(e.Note) + "; " + ref
	}
	return fmt.Sprintf("host key of %s %s (%s)", e.Host, what, ref)
}

func (e *HostKeyError) message() string {
	offered := fmt.Sprintf("%s %s", e.Offered.Type(), ssh.FingerprintSHA256(e.Offered))
	host, port, _ := net.SplitHostPort(e.Host)
	switch {
	case e.Revoked != nil:
		return fmt.Sprintf("host key of %s is REVOKED (%s:%d): the server offered %s; refusing to connect",
			e.Host, e.Revoked.Revoked.Filename, e.Revoked.Revoked.Line, offered)
	case len(e.Known) == 0:
		files := strings.Join(e.Files, ", ")
		if files == "" {
			files = "(none)"
		}
		scan := "ssh-keyscan " + host
		if port != "22" {
			scan = "ssh-keyscan -p " + port + " " + host
		}
		target := "~/.ssh/known_hosts"
		if len(e.Files) > 0 {
			target = e.Files[0]
		}
		return fmt.Sprintf("host key of %s is unknown: the server offered %s, which is in no known_hosts file (%s); "+
			"refusing to connect. If that fingerprint is right, add it with: %s >> %s",
			e.Host, offered, files, scan, target)
	default:
		var known []string
		for _, k := range e.Known {
			known = append(known, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
		}
		return fmt.Sprintf("host key of %s has CHANGED: known_hosts has %s, but the server offered %s; "+
			"refusing to connect: this may be an attack. If the key was changed on purpose, remove the old line and add the new key",
			e.Host, strings.Join(known, ", "), offered)
	}
}

// check is the ssh.HostKeyCallback; it turns knownhosts' errors into
// HostKeyErrors that name the host and every fingerprint.
func (h *hostKeys) check(hostport string, remote net.Addr, key ssh.PublicKey) error {
	err := h.callback(hostport, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return &HostKeyError{Host: hostport, Offered: key, Revoked: re, Files: h.files}
	case errors.As(err, &ke):
		known, _ := h.splitCA(ke.Want)
		files := h.files
		if len(files) == 0 {
			files = h.missing
		}
		return &HostKeyError{Host: hostport, Offered: key, Known: known, Files: files}
	}
	return err
}

// splitCA separates plain known keys from certificate authorities.
func (h *hostKeys) splitCA(want []knownhosts.KnownKey) (plain []knownhosts.KnownKey, cas int) {
	for _, k := range want {
		if h.caLines[k.Filename][k.Line] {
			cas++
			continue
		}
		plain = append(plain, k)
	}
	return plain, cas
}

// algorithms returns the host key algorithms to offer for hostport: those of
// the keys known_hosts has for it, so the server presents a key we can
// check instead of another type we would refuse as "changed". Nil means
// the host is unknown, and any algorithm will do (the key is refused
// anyway).
func (h *hostKeys) algorithms(hostport string) []string {
	// Asking about a key nobody has yields the list of known keys.
	err := h.callback(hostport, &net.TCPAddr{IP: net.IPv4zero}, probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	if len(ke.Want) == 0 {
		// Unknown host and no certificate authority for it: a host
		// certificate could not be checked, so ask for a plain key, which
		// can be shown to the user and recorded.
		return []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
			ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	plain, cas := h.splitCA(ke.Want)
	var algs []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algs = append(algs, x)
			}
		}
	}
	if cas > 0 {
		// A certificate authority is known for the host: prefer host
		// certificates, of any key type.
		add(ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
			ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
		if len(plain) == 0 {
			// Still accept a plain key, so that a server without a
			// certificate gets a clear "unknown key" instead of "no
			// common algorithm".
			add(ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
				ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
			return algs
		}
	}
	for _, k := range plain {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algs
}

// probeKey is a public key no known_hosts line can hold.
type probeKey struct{}

func (probeKey) Type() string                        { return "shunt-probe" }
func (probeKey) Marshal() []byte                     { return []byte("\x00\x00\x00\x0bshunt-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }
