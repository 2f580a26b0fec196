package broker

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentityFiles are tried, like OpenSSH does, when a profile names
// no identity file. Only those that exist are read.
var defaultIdentityFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// signers gathers the keys for public-key authentication: the ssh-agent's
// first (as OpenSSH does), then the identity files. The returned function
// closes the agent connection; call it after the handshake.
func signers(p *Profile, agentSock string, log logrus.FieldLogger) ([]ssh.Signer, func(), error) {
	var out []ssh.Signer
	done := func() {}
	if agentSock != "" {
		c, err := net.Dial("unix", agentSock)
		if err != nil {
			log.WithError(err).Warn("ssh-agent (SSH_AUTH_SOCK) unreachable; using identity files only")
		} else {
			done = func() { c.Close() }
			s, err := agent.NewClient(c).Signers()
			if err != nil {
				log.WithError(err).Warn("ssh-agent did not list its keys")
			}
			out = append(out, s...)
		}
	}
	files := p.IdentityFiles
	explicit := len(files) > 0
	if !explicit {
		if home, err := os.UserHomeDir(); err == nil {
			for _, f := range defaultIdentityFiles {
				files = append(files, home+"/.ssh/"+f)
			}
		}
	}
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if explicit {
				errs = append(errs, fmt.Errorf("identity file %s: %w", f, err))
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(data)
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			log.WithField("identity_file", f).Warn("identity file is protected by a passphrase, which shunt cannot ask for yet; load it into ssh-agent instead")
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("identity file %s: %w", f, err))
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		done()
		if len(errs) > 0 {
			return nil, nil, errors.Join(errs...)
		}
		return nil, nil, errors.New("no key to log in with: name identity_files in the profile or run an ssh-agent (SSH_AUTH_SOCK)")
	}
	for _, err := range errs {
		log.WithError(err).Warn("identity file skipped")
	}
	return out, done, nil
}
