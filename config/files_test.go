package config

import (
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// What shunt check finds wrong with the files a profile names: an error
// where nothing could work, a warning where something else may, each at
// the line of the key (or item) that names the file.
func TestFileChecks(t *testing.T) {
	const rule = "rules:\n  - action: tunnel\n    profile: p\n"
	tests := []struct {
		name  string
		yaml  string
		setup func(e *testEnv)
		// want are the problems expected, each "error x.yaml:N: text" or
		// "warning x.yaml:N: text"; nothing else may be reported.
		want []string
	}{
		{
			name: "all there",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id]\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/.ssh/id", testKey(e.t), 0o600)
			},
		},
		{
			name: "encrypted key",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id]\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/.ssh/id", encryptedKey(e.t), 0o600)
			},
		},
		{
			name: "missing identity file, other methods left",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files:\n      - ~/.ssh/id_here\n      - ~/.ssh/id_gone\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/.ssh/id_here", testKey(e.t), 0o600)
			},
			want: []string{`warning x.yaml:6: profile "p": identity file /home/alice/.ssh/id_gone does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f /home/alice/.ssh/id_gone; shunt tries its other identity files, the ssh-agent's keys, keyboard-interactive, password`},
		},
		{
			name: "the only key, and nothing else allowed",
			yaml: "profiles:\n  - name: p\n    host: gw\n    auth_methods: [publickey]\n    identities_only: true\n    identity_files: [~/.ssh/id_gone]\n" + rule,
			want: []string{`error x.yaml:6: profile "p": identity file /home/alice/.ssh/id_gone does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f /home/alice/.ssh/id_gone; no login can work: the profile allows only publickey (auth_methods) with identities_only, and none of its identity files can be used`},
		},
		{
			name: "the only key, but the agent may have one",
			yaml: "profiles:\n  - name: p\n    host: gw\n    auth_methods: [publickey]\n    identity_files: [~/.ssh/id_gone]\n" + rule,
			want: []string{`warning x.yaml:5: profile "p": identity file /home/alice/.ssh/id_gone does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f /home/alice/.ssh/id_gone; shunt tries the ssh-agent's keys`},
		},
		{
			name: "the only key of a profile no rule uses",
			yaml: "profiles:\n  - name: p\n    host: gw\n    auth_methods: [publickey]\n    identities_only: true\n    identity_files: [~/.ssh/id_gone]\n",
			want: []string{`warning x.yaml:6: profile "p": identity file /home/alice/.ssh/id_gone does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f /home/alice/.ssh/id_gone; no login can work: the profile allows only publickey (auth_methods) with identities_only, and none of its identity files can be used (a warning only: no rule uses profile "p")`},
		},
		{
			name: "the only key of a jump host",
			yaml: "profiles:\n  - name: hop\n    host: bastion\n    auth_methods: [publickey]\n    identities_only: true\n    identity_files: [/k]\n  - name: p\n    host: gw\n    jump: hop\n" + rule,
			setup: func(e *testEnv) {
				e.files["/k"] = testFile{dir: true}
			},
			want: []string{`error x.yaml:6: profile "hop": identity file /k is a directory: name the private key file in it; no login can work`},
		},
		{
			name: "unreadable as root",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [/k]\n" + rule,
			setup: func(e *testEnv) {
				e.euid = 0
				e.files["/k"] = testFile{err: syscall.EACCES}
			},
			want: []string{`warning x.yaml:4: profile "p": identity file /k cannot be read (permission denied); shunt tries the ssh-agent's keys, keyboard-interactive, password`},
		},
		{
			name: "unreadable by this user: root may",
			yaml: "profiles:\n  - name: p\n    host: gw\n    auth_methods: [publickey]\n    identities_only: true\n    identity_files: [/k]\n" + rule,
			setup: func(e *testEnv) {
				e.files["/k"] = testFile{err: syscall.EACCES}
			},
			want: []string{`warning x.yaml:6: profile "p": identity file /k cannot be read (permission denied); shunt up, as root, may`},
		},
		{
			name: "public key named",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id.pub]\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/.ssh/id.pub", testPublicKey(e.t), 0o644)
			},
			want: []string{`warning x.yaml:4: profile "p": identity file /home/alice/.ssh/id.pub is a public key: name the private key (/home/alice/.ssh/id); shunt tries`},
		},
		{
			name: "not a key",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/notes.txt]\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/notes.txt", "hello\n", 0o600)
			},
			want: []string{`warning x.yaml:4: profile "p": identity file /home/alice/notes.txt is not a private key that shunt can read; shunt tries`},
		},
		{
			name: "key others can read",
			yaml: "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id]\n" + rule,
			setup: func(e *testEnv) {
				e.file("/home/alice/.ssh/id", testKey(e.t), 0o640)
			},
			want: []string{`the file: x.yaml:4: profile "p": identity file /home/alice/.ssh/id is refused: it can be used by other users (mode 0640), and OpenSSH refuses such a key as UNPROTECTED PRIVATE KEY FILE; restrict it with chmod 600 /home/alice/.ssh/id`},
		},
		{
			name: "identity files without publickey",
			yaml: "profiles:\n  - name: p\n    host: gw\n    auth_methods: [password]\n    identity_files: [~/.ssh/id]\n" + rule,
			want: []string{`warning x.yaml:5: profile "p": its identity files are never used: auth_methods has no publickey`},
		},
		{
			name: "missing certificate",
			yaml: "profiles:\n  - name: p\n    host: gw\n    certificate_files: [~/.ssh/id-cert.pub]\n" + rule,
			want: []string{`warning x.yaml:4: profile "p": certificate file /home/alice/.ssh/id-cert.pub does not exist`},
		},
		{
			name: "no known_hosts, strict by default",
			yaml: "profiles:\n  - name: p\n    host: gw\n    port: 2222\n" + rule,
			setup: func(e *testEnv) {
				delete(e.files, "/home/alice/.ssh/known_hosts")
			},
			want: []string{`error x.yaml:2: profile "p": known_hosts file /home/alice/.ssh/known_hosts does not exist: with host_key_policy strict (the default), every connection to gw will be refused. ` +
				`Add the server's host key with: ssh-keyscan -p 2222 gw >> /home/alice/.ssh/known_hosts (and check that the fingerprints ssh-keygen -lf /home/alice/.ssh/known_hosts prints are the server's), or set host_key_policy: accept-new`},
		},
		{
			name: "no known_hosts file of a list, strict",
			yaml: "profiles:\n  - name: p\n    host: [gw1, gw2]\n    host_key_policy: strict\n    known_hosts:\n      - /etc/a\n      - /etc/b\n" + rule,
			want: []string{`error x.yaml:6: profile "p": known_hosts files /etc/a, /etc/b do not exist: with host_key_policy strict, every connection to gw1, gw2 will be refused. Add the server's host key with: ssh-keyscan gw1 gw2 >> /etc/a`},
		},
		{
			name: "one known_hosts file of two missing",
			yaml: "profiles:\n  - name: p\n    host: gw\n    known_hosts:\n      - ~/.ssh/known_hosts\n      - /etc/ssh/ssh_known_hosts\n" + rule,
			want: []string{`warning x.yaml:6: profile "p": known_hosts file /etc/ssh/ssh_known_hosts does not exist (it is read as empty)`},
		},
		{
			name: "no known_hosts, accept-new",
			yaml: "profiles:\n  - name: p\n    host: gw\n    host_key_policy: accept-new\n    known_hosts: /etc/kh\n" + rule,
			want: []string{`warning x.yaml:5: profile "p": known_hosts file /etc/kh does not exist yet: with host_key_policy accept-new, the host key gw first offers is trusted unchecked and recorded there. To check it first: ssh-keyscan gw >> /etc/kh`},
		},
		{
			name: "no known_hosts, ask",
			yaml: "profiles:\n  - name: p\n    host: gw\n    host_key_policy: ask\n    known_hosts: /etc/kh\n" + rule,
			want: []string{`warning x.yaml:5: profile "p": known_hosts file /etc/kh does not exist yet: with host_key_policy ask, you are asked to confirm the host key of gw at the first connection`},
		},
		{
			name: "no known_hosts for a profile no rule uses",
			yaml: "profiles:\n  - name: p\n    host: gw\n    known_hosts: /etc/kh\n",
			want: []string{`warning x.yaml:4: profile "p": known_hosts file /etc/kh does not exist: with host_key_policy strict (the default), every connection to gw will be refused.`},
		},
		{
			name: "known_hosts unreadable",
			yaml: "profiles:\n  - name: p\n    host: gw\n    known_hosts: /etc/kh\n" + rule,
			setup: func(e *testEnv) {
				e.euid = 0
				e.files["/etc/kh"] = testFile{err: syscall.EACCES}
			},
			want: []string{`error x.yaml:4: profile "p": known_hosts file /etc/kh cannot be read (permission denied): no connection can work`},
		},
		{
			name: "known_hosts unreadable by this user",
			yaml: "profiles:\n  - name: p\n    host: gw\n    known_hosts: /etc/kh\n" + rule,
			setup: func(e *testEnv) {
				e.files["/etc/kh"] = testFile{err: syscall.EACCES}
			},
			want: []string{`warning x.yaml:4: profile "p": known_hosts file /etc/kh cannot be read by this user (permission denied); shunt up, as root, may`},
		},
		{
			name: "known_hosts a directory",
			yaml: "profiles:\n  - name: p\n    host: gw\n    known_hosts: /etc/ssh\n" + rule,
			setup: func(e *testEnv) {
				e.files["/etc/ssh"] = testFile{dir: true}
			},
			want: []string{`error x.yaml:4: profile "p": known_hosts file /etc/ssh is a directory: name a file; no connection can work`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			got := problems(e, tt.yaml)
			if d := diffPrefixes(tt.want, got); d != "" {
				t.Error(d)
			}
		})
	}
}

// An ssh_config alias that no ssh_config file defines is a warning at the
// ssh_config key: shunt would connect to a host of that name, with none of
// the settings meant for it.
func TestSSHConfigAliasUndefined(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	user := filepath.Join(dir, "config")
	os.WriteFile(user, []byte("Host office\n  HostName gw.corp.example\nHost *.corp\n  User corp\nHost *\n  ServerAliveInterval 10\n"), 0o600)
	const yaml = "profiles:\n  - name: a\n    ssh_config: office\n  - name: b\n    port: 22\n    ssh_config: offce\n  - name: c\n    ssh_config: mail.corp\n"
	got := problemsWith(e, yaml, []string{user, filepath.Join(dir, "absent")})
	want := []string{`warning x.yaml:6: profile "b": ssh_config host "offce" is not defined: no Host line of ` + user +
		` names it, so shunt connects to a host named "offce" with none of its settings; check the spelling against the Host lines`}
	if d := diffPrefixes(want, got); d != "" {
		t.Error(d)
	}
	got = problemsWith(e, "profiles:\n  - name: a\n    ssh_config: office\n", []string{filepath.Join(dir, "absent")})
	want = []string{`warning x.yaml:3: profile "a": ssh_config host "office" is not defined: no ssh_config file exists (` + filepath.Join(dir, "absent") + `)`}
	if d := diffPrefixes(want, got); d != "" {
		t.Error(d)
	}
	// An identity file from ssh_config is reported at the ssh_config key.
	os.WriteFile(user, []byte("Host office\n  IdentityFile ~/.ssh/id_office\n"), 0o600)
	got = problemsWith(e, "profiles:\n  - name: a\n    port: 22\n    ssh_config: office\n", []string{user})
	want = []string{`warning x.yaml:4: profile "a": identity file /home/alice/.ssh/id_office does not exist`}
	if d := diffPrefixes(want, got); d != "" {
		t.Error(d)
	}
}

// Problems reach the result of LoadLayers, for shunt check and shunt up.
func TestLoadedProblems(t *testing.T) {
	e := newTestEnv(t)
	f := write(t, e.dir(), "w.yaml", "profiles:\n  - name: p\n    host: gw\n    identity_files: [~/.ssh/id_gone]\n")
	l, err := LoadLayers(Layers{Extra: []string{f}, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Problems) != 1 || l.Problems[0].Fatal || !strings.HasPrefix(l.Problems[0].String(), f+":4: profile \"p\": identity file /home/alice/.ssh/id_gone does not exist") {
		t.Errorf("problems = %v", l.Problems)
	}
}

// problems parses yaml and lists what it reports, errors and warnings.
func problems(e *testEnv, yaml string) []string {
	return problemsWith(e, yaml, []string{})
}

func problemsWith(e *testEnv, yaml string, sshConfigFiles []string) []string {
	opts := e.opts()
	opts.SSHConfigFiles = sshConfigFiles
	c, err := ParseWith("x.yaml", []byte(yaml), opts)
	if err != nil {
		return []string{"the file: " + err.Error()}
	}
	var out []string
	for _, p := range c.Problems {
		kind := "warning "
		if p.Fatal {
			kind = "error "
		}
		out = append(out, kind+p.String())
	}
	return out
}

// diffPrefixes says how got differs from want, where each of got must
// start with its want.
func diffPrefixes(want, got []string) string {
	ok := len(want) == len(got)
	for i := range want {
		if ok && !strings.HasPrefix(got[i], want[i]) {
			ok = false
		}
	}
	if ok {
		return ""
	}
	return "reported:\n  " + strings.Join(got, "\n  ") + "\nwant (as prefixes):\n  " + strings.Join(want, "\n  ")
}

// encryptedKey is an ed25519 key under a passphrase.
func encryptedKey(t *testing.T) string {
	k := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	b, err := ssh.MarshalPrivateKeyWithPassphrase(k, "test", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}
