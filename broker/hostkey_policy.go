package broker

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
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
		if err == nil {
			h.hostKey = keyLabel(key)
		}
		var hke *HostKeyError
		if err == nil || !errors.As(err, &hke) || hke.Revoked != nil || len(hke.Known) > 0 {
			return err
		}
		switch p.HostKeyPolicy {
		case AcceptNew:
		case Ask:
			text := fmt.Sprintf("The authenticity of host '%s' can't be established.\n%s key fingerprint is %s.\nAre you sure you want to continue connecting (yes/no)? ",
				hostport, keyName(key), ssh.FingerprintSHA256(key))
			q := Question{Kind: HostKey, Text: text, Echo: true, HostKey: keyLabel(key),
				Fingerprint: ssh.FingerprintSHA256(key), KnownHostsLine: knownHostsLine(hostport, key)}
			if len(p.KnownHosts) > 0 {
				q.KnownHostsFile = p.KnownHosts[0]
			}
			ans, aerr := h.ask(q)
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
		file, rerr := recordHostKey(p.KnownHosts, hostport, key, h.link.pool.b.opts.FileOwner)
		if rerr != nil {
			hke.Note = "recording it failed: " + rerr.Error()
			return hke
		}
		h.link.log.WithFields(map[string]any{"server": hostport, "fingerprint": ssh.FingerprintSHA256(key), "known_hosts": file}).
			Warn("new host key accepted and recorded")
		h.hostKey = keyLabel(key)
		return nil
	}
}

// FileOwner is a user and group that files are given to.
type FileOwner struct{ UID, GID int }

// recordHostKey appends key for hostport to the first known_hosts file,
// creating it (and the directories missing above it) as ssh(1) would for
// the user: directories 0700, as ssh makes ~/.ssh, and the file 0600
// (ssh's follows the umask; known_hosts names the hosts one uses, which
// others need not read). owner, set under sudo, is the user who ran sudo:
// what is created in a directory of theirs (their home, their ~/.ssh) is
// given to them, as if they had run ssh; what is created in root's
// directories stays root's. In a directory of theirs, a symbolic link is
// not followed: they could point it at a file of root's, which root would
// then append to.
func recordHostKey(files []string, hostport string, key ssh.PublicKey, owner *FileOwner) (string, error) {
	if len(files) == 0 {
		return "", errors.New("no known_hosts file to record it in")
	}
	f := files[0]
	dir := filepath.Dir(f)
	if err := makeDirs(dir, owner); err != nil {
		return f, err
	}
	theirs := owner != nil && ownedBy(dir, owner.UID)
	flags := os.O_RDWR | os.O_APPEND
	if theirs {
		flags |= noFollow
	}
	fh, err := os.OpenFile(f, flags|os.O_CREATE|os.O_EXCL, 0o600)
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		fh, err = os.OpenFile(f, flags, 0)
	}
	if err != nil {
		return f, err
	}
	if created && theirs {
		if err := fh.Chown(owner.UID, owner.GID); err != nil {
			fh.Close()
			os.Remove(f)
			return f, fmt.Errorf("giving %s to uid %d: %w", f, owner.UID, err)
		}
	}
	// A file whose last line has no newline would get our line glued to it.
	if st, err := fh.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := fh.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			fh.WriteString("\n")
		}
	}
	line := knownHostsLine(hostport, key) + "\n"
	if _, err := fh.WriteString(line); err != nil {
		fh.Close()
		return f, err
	}
	return f, fh.Close()
}

// knownHostsLine is the line recordHostKey writes for key, without its
// newline.
func knownHostsLine(hostport string, key ssh.PublicKey) string {
	if cert, ok := key.(*ssh.Certificate); ok {
		key = cert.Key // known_hosts holds keys; certificates go with @cert-authority
	}
	return knownhosts.Line([]string{knownhosts.Normalize(hostport)}, key)
}

// makeDirs makes dir and the directories missing above it, mode 0700;
// each made in a directory of owner's is given to owner.
func makeDirs(dir string, owner *FileOwner) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	for _, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if owner != nil && ownedBy(filepath.Dir(d), owner.UID) {
			if err := os.Lchown(d, owner.UID, owner.GID); err != nil {
				return fmt.Errorf("giving %s to uid %d: %w", d, owner.UID, err)
			}
		}
	}
	return nil
}

func keyName(k ssh.PublicKey) string {
	t := strings.TrimPrefix(k.Type(), "ssh-")
	return strings.ToUpper(strings.SplitN(t, "-", 2)[0])
}
