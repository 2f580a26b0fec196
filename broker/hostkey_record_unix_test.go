//go:build unix

package broker

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

func recordKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(bytes.NewReader(make([]byte, 64)))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// modeOwner is path's permission bits and owner.
func modeOwner(t *testing.T, path string) (os.FileMode, uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Mode().Perm(), st.Uid, st.Gid
}

// Under sudo, accept-new's known_hosts and the ~/.ssh it makes belong to
// the user who ran sudo, with ssh's modes (~/.ssh 0700; the file 0600),
// whatever the umask; what it makes in root's directories stays root's,
// and a symbolic link in the user's directory is not followed.
func TestRecordHostKeyOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files to another user")
	}
	const uid, gid = 4242, 4343
	owner := &FileOwner{UID: uid, GID: gid}
	key := recordKey(t)
	old := syscall.Umask(0o002) // a permissive umask must not loosen the modes
	defer syscall.Umask(old)

	home := filepath.Join(t.TempDir(), "alice")
	if err := os.Mkdir(home, 0o750); err != nil {
		t.Fatal(err)
	}
	os.Chown(home, uid, gid)
	kh := filepath.Join(home, ".ssh", "known_hosts")
	if _, err := recordHostKey([]string{kh}, "gw.example:22", key, owner); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(kh), 0o700}, {kh, 0o600}} {
		if m, u, g := modeOwner(t, c.path); m != c.mode || u != uid || g != gid {
			t.Errorf("%s: mode %04o owner %d:%d, want %04o %d:%d", c.path, m, u, g, c.mode, uid, gid)
		}
	}
	// A second key appends, keeping the owner and the mode.
	if _, err := recordHostKey([]string{kh}, "other.example:22", key, owner); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(kh)
	if n := strings.Count(string(data), "\n"); n != 2 {
		t.Errorf("%d lines after two keys:\n%s", n, data)
	}
	if m, u, _ := modeOwner(t, kh); m != 0o600 || u != uid {
		t.Errorf("after appending: mode %04o owner %d", m, u)
	}

	// root's directory: what is made there stays root's.
	etc := filepath.Join(t.TempDir(), "etc", "shunt", "known_hosts")
	if _, err := recordHostKey([]string{etc}, "gw.example:22", key, owner); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(etc), 0o700}, {etc, 0o600}} {
		if m, u, g := modeOwner(t, c.path); m != c.mode || u != 0 || g != 0 {
			t.Errorf("%s: mode %04o owner %d:%d, want %04o root's", c.path, m, u, g, c.mode)
		}
	}

	// The user's link to a file of root's is not followed.
	target := filepath.Join(t.TempDir(), "roots-file")
	os.WriteFile(target, []byte("root's\n"), 0o644)
	os.Remove(kh)
	if err := os.Symlink(target, kh); err != nil {
		t.Fatal(err)
	}
	if _, err := recordHostKey([]string{kh}, "gw.example:22", key, owner); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("through the user's link: %v, want ELOOP", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "root's\n" {
		t.Errorf("root's file became %q", b)
	}

	// Not under sudo: everything is the process's.
	mine := filepath.Join(t.TempDir(), ".ssh", "known_hosts")
	if _, err := recordHostKey([]string{mine}, "gw.example:22", key, nil); err != nil {
		t.Fatal(err)
	}
	if m, u, _ := modeOwner(t, mine); m != 0o600 || u != 0 {
		t.Errorf("without sudo: mode %04o owner %d", m, u)
	}
}
