package gateway

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "host_ed25519")
	s1, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created || s1.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Fatalf("create: %v, %v, %v", s1, created, err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode: %v, %v", fi, err)
		}
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil || !bytes.Equal(pub, ssh.MarshalAuthorizedKey(s1.PublicKey())) {
		t.Errorf(".pub = %q, %v", pub, err)
	}
	s2, created, err := LoadOrCreateHostKey(path)
	if err != nil || created || !bytes.Equal(s2.PublicKey().Marshal(), s1.PublicKey().Marshal()) {
		t.Fatalf("reload: %v, %v", created, err)
	}
	// OpenSSH reads what the gateway wrote.
	if bin, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(bin, "-y", "-f", path).Output()
		if err != nil || !strings.HasPrefix(string(out), strings.TrimSpace(string(pub))) {
			t.Errorf("ssh-keygen -y: %q, %v", out, err)
		}
	}
}

func TestLoadHostKeyErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateHostKey(bad); err == nil || !strings.Contains(err.Error(), "not a private key") {
		t.Errorf("bad key: %v", err)
	}
	if _, _, err := LoadOrCreateHostKey(filepath.Join(dir, "no", "such", "dir", "key")); err == nil || !strings.Contains(err.Error(), "cannot create") {
		t.Errorf("missing dir: %v", err)
	}
	if bin, err := exec.LookPath("ssh-keygen"); err == nil {
		enc := filepath.Join(dir, "enc")
		if out, err := exec.Command(bin, "-q", "-t", "ed25519", "-N", "secret", "-f", enc).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		if _, _, err := LoadOrCreateHostKey(enc); err == nil || !strings.Contains(err.Error(), "encrypted") {
			t.Errorf("encrypted key: %v", err)
		}
	}
}

// Files other users can read or change are refused, as sshd refuses them
// (StrictModes): a host key others can read, an authorized_keys file others
// can write.
func TestFilesOthersCanChangeRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	dir := t.TempDir()
	key := filepath.Join(dir, "host")
	if _, _, err := LoadOrCreateHostKey(key); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateHostKey(key); err == nil || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Errorf("a host key others can read: %v, want a refusal naming chmod 600", err)
	}
	_, l := testKey(t, 3)
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(ak, []byte(l+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(ak, 0o620); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadAuthorizedKeys(ak); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("authorized_keys its group can write: %v, want a refusal naming chmod go-w", err)
	}
}
