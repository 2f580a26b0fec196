package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyCallback applies the profile's policy on top of known_hosts: a
// changed or revoked key is always refused; an unknown key is refused,
// recorded (accept-new), or put to the user (ask).
func (h *handshake) hostKeyCallback(hk *hostKeys) ssh.HostKeyCallback {
	p := h.link.pool.p
	return func(hostport string, remote net.Addr, key ssh.PublicKey) error {
		err := hk.check(hostport, remote, key)
		var hke *HostKeyError
		if err == nil || !errors.As(err, &hke) || hke.Revoked != nil || len(hke.Known) > 0 {
			return err
		}
		switch p.HostKeyPolicy {
		case AcceptNew:
		case Ask:
			text := fmt.Sprintf("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)? ",
				hostport, keyName(key), ssh.FingerprintSHA256(key))
			ans, aerr := h.ask(Question{Kind: HostKey, Text: text, Echo: true})
			if aerr != nil {
				hke.Note = "asking failed: " + aerr.Error()
				return hke
			}
			if a := strings.ToLower(strings.TrimSpace(ans)); a != "yes" && a != "y" {
				hke.Note = "the user said no"
				return hke
			}
		default:
			return err
		}
		file, rerr := recordHostKey(p.KnownHosts, hostport, key)
		if rerr != nil {
			hke.Note = "recording it failed: " + rerr.Error()
			return hke
		}
		h.link.log.WithFields(map[string]any{"server": hostport, "fingerprint": ssh.FingerprintSHA256(key), "known_hosts": file}).
			Warn("new host key accepted and recorded")
		return nil
	}
}

// recordHostKey appends key for hostport to the first known_hosts file,
// creating it (and its directory) if needed.
func recordHostKey(files []string, hostport string, key ssh.PublicKey) (string, error) {
	if len(files) == 0 {
		return "", errors.New("no known_hosts file to record it in")
	}
	f := files[0]
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		return f, err
	}
	fh, err := os.OpenFile(f, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return f, err
	}
	// A file whose last line has no newline would get our line glued to it.
	if st, err := fh.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := fh.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			fh.WriteString("\n")
		}
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		key = cert.Key // known_hosts holds keys; certificates go with @cert-authority
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key) + "\n"
	if _, err := fh.WriteString(line); err != nil {
		fh.Close()
		return f, err
	}
	return f, fh.Close()
}

func keyName(k ssh.PublicKey) string {
	t := strings.TrimPrefix(k.Type(), "ssh-")
	return strings.ToUpper(strings.SplitN(t, "-", 2)[0])
}
