package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestSSHConfig(t *testing.T) {
	dir := t.TempDir()
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
	c, err := ParseWith("x.yaml", []byte(yaml), Options{SSHConfigFiles: []string{user, system}})
	if err != nil {
		t.Fatal(err)
	}
	home, _ := os.UserHomeDir()
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
	if !reflect.DeepEqual(p, want) {
		t.Errorf("office =\n%+v\nwant\n%+v", p, want)
	}
	if p.Ciphers[0] != "aes256-gcm@openssh.com" || len(p.Ciphers) < 2 {
		t.Errorf("ciphers = %v, want aes256-gcm first, then the defaults", p.Ciphers)
	}
	edge, ok := c.Profile("ssh_config:bob@bastion.example:2200,edge")
	if !ok || edge.Host[0] != "edge.corp.example" || edge.User != "edgeuser" || edge.Jump != "ssh_config:bob@bastion.example:2200" {
		t.Errorf("edge hop = %+v", edge)
	}
	bastion, ok := c.Profile("ssh_config:bob@bastion.example:2200")
	if !ok || bastion.Host[0] != "bastion.example" || bastion.User != "bob" || bastion.Port != 2200 || bastion.Jump != "" {
		t.Errorf("bastion hop = %+v", bastion)
	}
	o, _ := c.Profile("override")
	if o.Host[0] != "other.example" || o.User != "carol" || o.KeepaliveInterval.D != 30*time.Second || o.Port != 2222 {
		t.Errorf("explicit keys must win: %+v", o)
	}
	pl, _ := c.Profile("plain")
	if pl.Host[0] != "plain" || pl.Port != 2022 || pl.User != "fromsystem" {
		t.Errorf("plain = %+v (alias as host, user's Port, system's User)", pl)
	}
}

func TestSSHConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "config")
	os.WriteFile(f, []byte("Host bad\n  Port twenty\n  StrictHostKeyChecking maybe\n"), 0o600)
	_, err := ParseWith("x.yaml", []byte("profiles:\n  - name: b\n    ssh_config: bad\n"), Options{SSHConfigFiles: []string{f}})
	if err == nil || !strings.Contains(err.Error(), `x.yaml:2: profile "b": ssh_config Port for host "bad": "twenty" is not a port number`) ||
		!strings.Contains(err.Error(), `StrictHostKeyChecking for host "bad": "maybe"`) {
		t.Fatalf("err = %v", err)
	}
}

// A jump host whose own ssh_config jumps back is a loop: an error, not a
// crash.
func TestSSHConfigJumpLoop(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config")
	os.WriteFile(f, []byte("Host *.corp\n  ProxyJump bastion.corp\n"), 0o600)
	_, err := ParseWith("x.yaml", []byte("profiles:\n  - name: mail\n    ssh_config: mail.corp\n"), Options{SSHConfigFiles: []string{f}})
	if err == nil || !strings.Contains(err.Error(), "loops") {
		t.Fatalf("err = %v, want a ProxyJump loop", err)
	}
}
