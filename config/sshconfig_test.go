package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSSHConfig(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	user := filepath.Join(dir, "config")
	system := filepath.Join(dir, "ssh_config")
	os.WriteFile(user, []byte(`
Host office
  HostName gw.corp.example
  Port 2222
  User alice
  IdentityFile ~/.ssh/id_office
  IdentityFile %d/.ssh/id_%r
  IdentitiesOnly yes
  CertificateFile ~/.ssh/id_office-cert.pub
  ProxyJump bob@bastion.example:2200,edge
  UserKnownHostsFile /etc/corp/known_hosts ~/.ssh/known_hosts_corp
  StrictHostKeyChecking accept-new
  ServerAliveInterval 5
  ServerAliveCountMax 4
  Ciphers ^aes256-gcm@openssh.com

Host edge
  HostName edge.corp.example
  User edgeuser

Host plain
  Port 2022
`), 0o600)
	os.WriteFile(system, []byte("Host *\n  Port 22\n  User fromsystem\n"), 0o600)
	yaml := `profiles:
  - name: office
    ssh_config: office
  - name: override
    ssh_config: office
    host: other.example
    user: carol
    keepalive_interval: 30s
  - name: plain
    ssh_config: plain
rules:
  - action: tunnel
    profile: office
`
	e.file("/etc/corp/known_hosts", "", 0o644)
	opts := e.opts()
	opts.SSHConfigFiles = []string{user, system}
	c, err := ParseWith("x.yaml", []byte(yaml), opts)
	if err != nil {
		t.Fatal(err)
	}
	home := "/home/alice"
	p, _ := c.Profile("office")
	want := Profile{
		Name: "office", SSHConfig: "office",
		Host: StringList{"gw.corp.example"}, Port: 2222, User: "alice",
		IdentityFiles:     []string{filepath.Join(home, ".ssh/id_office"), filepath.Join(home, ".ssh/id_alice")},
		IdentitiesOnly:    true,
		CertificateFiles:  []string{filepath.Join(home, ".ssh/id_office-cert.pub")},
		KnownHosts:        StringList{"/etc/corp/known_hosts", filepath.Join(home, ".ssh/known_hosts_corp")},
		HostKeyPolicy:     "accept-new",
		KeepaliveInterval: Duration{D: 5 * time.Second, Set: true},
		KeepaliveCount:    4,
		Ciphers:           p.Ciphers,
		Jump:              "ssh_config:bob@bastion.example:2200,edge",
		Line:              p.Line,
		File:              "x.yaml",
	}
	if d := diff(want, p); d != "" {
		t.Errorf("office (-want +got):\n%s", d)
	}
	if p.Ciphers[0] != "aes256-gcm@openssh.com" || len(p.Ciphers) < 2 {
		t.Errorf("ciphers = %v, want aes256-gcm first, then the defaults", p.Ciphers)
	}
	// What matters of the other profiles.
	type some struct {
		Host      StringList
		Port      int
		User      string
		Jump      string
		Keepalive time.Duration
	}
	of := func(name string) some {
		p, ok := c.Profile(name)
		if !ok {
			t.Errorf("no profile %q", name)
		}
		return some{p.Host, p.Port, p.User, p.Jump, p.KeepaliveInterval.D}
	}
	for _, w := range []struct {
		name, why string
		want      some
	}{
		{"ssh_config:bob@bastion.example:2200,edge", "the edge hop", some{Host: StringList{"edge.corp.example"}, Port: 22, User: "edgeuser", Jump: "ssh_config:bob@bastion.example:2200"}},
		{"ssh_config:bob@bastion.example:2200", "the bastion hop", some{Host: StringList{"bastion.example"}, Port: 2200, User: "bob"}},
		{"override", "explicit keys win", some{Host: StringList{"other.example"}, Port: 2222, User: "carol", Jump: "ssh_config:bob@bastion.example:2200,edge", Keepalive: 30 * time.Second}},
		{"plain", "the alias as host, the user's Port, the system's User", some{Host: StringList{"plain"}, Port: 2022, User: "fromsystem"}},
	} {
		if d := diff(w.want, of(w.name)); d != "" {
			t.Errorf("%s: %s (-want +got):\n%s", w.name, w.why, d)
		}
	}
}

func TestSSHConfigErrors(t *testing.T) {
	e := newTestEnv(t)
	f := filepath.Join(e.dir(), "config")
	os.WriteFile(f, []byte("Host bad\n  Port twenty\n  StrictHostKeyChecking maybe\n"), 0o600)
	opts := e.opts()
	opts.SSHConfigFiles = []string{f}
	_, err := ParseWith("x.yaml", []byte("profiles:\n  - name: b\n    ssh_config: bad\n"), opts)
	if err == nil || !strings.Contains(err.Error(), `x.yaml:2: profile "b": ssh_config Port for host "bad": "twenty" is not a port number`) ||
		!strings.Contains(err.Error(), `StrictHostKeyChecking for host "bad": "maybe"`) {
		t.Fatalf("err = %v", err)
	}
}

// A jump host whose own ssh_config jumps back is a loop: an error, not a
// crash.
func TestSSHConfigJumpLoop(t *testing.T) {
	e := newTestEnv(t)
	f := filepath.Join(e.dir(), "config")
	os.WriteFile(f, []byte("Host *.corp\n  ProxyJump bastion.corp\n"), 0o600)
	opts := e.opts()
	opts.SSHConfigFiles = []string{f}
	_, err := ParseWith("x.yaml", []byte("profiles:\n  - name: mail\n    ssh_config: mail.corp\n"), opts)
	if err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("err = %v, want a ProxyJump loop", err)
	}
}
