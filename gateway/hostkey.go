package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/config"
)

// LoadOrCreateHostKey reads the host's private key at path (OpenSSH or
// PEM format, unencrypted). If the file does not exist it makes an
// ed25519 key, writes it in OpenSSH format with mode 0600 and its public
// half to path.pub, and reports created.
func LoadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if why := hostKeyExposed(path); why != "" {
			return nil, false, &Error{File: path, Msg: "refused: " + why}
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			var missing *ssh.PassphraseMissingError
			if errors.As(err, &missing) {
				return nil, false, &Error{File: path, Msg: "the host key is encrypted: the gateway starts unattended, so remove the passphrase (ssh-keygen -p -N '' -f " + path + ")"}
			}
			return nil, false, &Error{File: path, Msg: fmt.Sprintf("not a private key (%v): point host_key at an OpenSSH private key, or at a missing file to have one made", err)}
		}
		return s, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, &Error{File: path, Msg: fmt.Sprintf("cannot read the host key: %v", err)}
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "shunt gateway host key")
	if err != nil {
		return nil, false, fmt.Errorf("encode host key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("host key signer: %w", err)
	}
	// O_EXCL: two gateways starting at once must not overwrite each
	// other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, &Error{File: path, Msg: fmt.Sprintf("cannot create the host key: %v", err)}
	}
	if _, err := f.Write(pem.EncodeToMemory(block)); err != nil {
		f.Close()
		os.Remove(path)
		return nil, false, &Error{File: path, Msg: fmt.Sprintf("cannot write the host key: %v", err)}
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, false, &Error{File: path, Msg: fmt.Sprintf("cannot write the host key: %v", err)}
	}
	pub := ssh.MarshalAuthorizedKey(s.PublicKey())
	if err := os.WriteFile(path+".pub", pub, 0o644); err != nil {
		return nil, false, &Error{File: path + ".pub", Msg: fmt.Sprintf("cannot write the host's public key: %v", err)}
	}
	return s, true, nil
}

// hostKeyExposed says how other users could read or change the host key
// (sshd refuses such a key too), or "" when they cannot.
func hostKeyExposed(path string) string {
	if runtime.GOOS == "windows" {
		return "" // no Unix modes
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("other users can read or change the host key (mode %04o): fix it with chmod 600 %s", st.Mode().Perm(), path)
	}
	if why := (config.Machine{}).OthersMayChange(path); why != "" {
		return "other users can change the host key: " + why
	}
	return ""
}
