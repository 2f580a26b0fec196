package config

import (
	"net/netip"
	"strings"
	"testing"
)

const listenProfile = `profiles:
  - name: office
    host: gw.example.com
    user: alice
    known_hosts: /nonexistent/known_hosts
`

func TestListeners(t *testing.T) {
	c, err := Parse("s.yaml", []byte(listenProfile+`socks_listen: 127.0.0.1:1080
http_proxy_listen: ["[::1]:8080", 192.168.50.1:8080]
allow_from: [192.168.50.0/24, 10.0.0.7]
socks_users:
  - name: alice
    password_hash: "$2y$05$NL8U6.AqeQNNmqBmYmYtQOt8/iY8jhS0YZb8f2fPLGMSk.V.rjTxG"
static_tunnels:
  - listen: 127.0.0.1:1143
    destination: mail.corp.example:143
    profile: office
tun:
  enabled: false
`))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Listeners()
	want := []string{"socks 127.0.0.1:1080", "http [::1]:8080", "http 192.168.50.1:8080", "static 127.0.0.1:1143"}
	if len(got) != len(want) {
		t.Fatalf("listeners %+v, want %v", got, want)
	}
	for i, l := range got {
		if l.Name() != want[i] {
			t.Errorf("listener %d is %s, want %s", i, l.Name(), want[i])
		}
	}
	if s := got[3]; s.Host != "mail.corp.example" || s.Port != 143 || s.Profile != "office" || s.Line != 13 {
		t.Errorf("static tunnel %+v", s)
	}
	if a := got[2].AllowFrom; len(a) != 2 || a[1] != netip.MustParsePrefix("10.0.0.7/32") {
		t.Errorf("allow_from %v", a)
	}
	if c.TUN.TUNEnabled() {
		t.Error("tun.enabled: false read as enabled")
	}
}

func TestListenerErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"open proxy", "socks_listen: 0.0.0.0:1080\n", "s.yaml:6: socks_listen 0.0.0.0:1080 is not a loopback address: add allow_from:"},
		{"not an address", "http_proxy_listen: proxy.local:8080\n", `s.yaml:6: http_proxy_listen "proxy.local:8080": "proxy.local" is not an IP address`},
		{"no port", "socks_listen: 127.0.0.1\n", "write ADDRESS:PORT"},
		{"twice", "socks_listen: 127.0.0.1:1080\nhttp_proxy_listen: 127.0.0.1:1080\n", "socks_listen listens there already"},
		{"bad hash", "socks_listen: 127.0.0.1:1080\nsocks_users:\n  - name: bob\n    password_hash: secret\n", `s.yaml:8: socks_users "bob": password_hash is not a bcrypt hash`},
		{"both passwords", "socks_listen: 127.0.0.1:1080\nsocks_users:\n  - name: bob\n    password_file: /run/secrets/bob\n    password_hash: x\n", "one of the two"},
		{"users without socks", "socks_users:\n  - name: bob\n    password_file: /run/secrets/bob\n", "socks_users without socks_listen"},
		{"static: unknown profile", "static_tunnels:\n  - listen: 127.0.0.1:1143\n    destination: mail:143\n    profile: offcie\n", `s.yaml:7: static tunnel 127.0.0.1:1143: profile "offcie" is not defined: use one of office`},
		{"static: bad destination", "static_tunnels:\n  - listen: 127.0.0.1:1143\n    destination: mail\n    profile: office\n", "write HOST:PORT"},
		{"no tun, nothing served", "tun:\n  enabled: false\n", "s.yaml:7: tun.enabled is false and nothing else is served"},
		{"no tun, split DNS", "socks_listen: 127.0.0.1:1080\ntun:\n  enabled: false\ndns:\n  enabled: true\n", "fake addresses that only the TUN carries"},
		{"bad allow_from", "socks_listen: 127.0.0.1:1080\nallow_from: [lan]\n", "s.yaml:7: allow_from [lan]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(listenProfile+tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// An ordinary user's shunt without a TUN keeps its socket and state in
// the user's directories; root's, and any with a TUN, in the machine's.
func TestUnprivilegedDefaults(t *testing.T) {
	yaml := []byte("socks_listen: 127.0.0.1:1080\ntun:\n  enabled: false\n")
	for _, tt := range []struct {
		name                string
		euid                int
		env                 map[string]string
		yaml                []byte
		wantSocket, wantDir string
	}{
		{"user, XDG", 1000, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_STATE_HOME": "/home/alice/.st"}, yaml, "/run/user/1000/shunt/shunt.sock", "/home/alice/.st/shunt"},
		{"user, HOME only", 1000, nil, yaml, "/home/alice/.local/state/shunt/shunt.sock", "/home/alice/.local/state/shunt"},
		{"root", 0, map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"}, yaml, DefaultControlSocket, DefaultStateDir},
		{"user, with a TUN", 1000, map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, []byte("socks_listen: 127.0.0.1:1080\n"), DefaultControlSocket, DefaultStateDir},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.euid = tt.euid
			for k, v := range tt.env {
				e.env[k] = v
			}
			c, err := ParseWith("s.yaml", tt.yaml, Options{Machine: e.machine(), SSHConfigFiles: []string{}})
			if err != nil {
				t.Fatal(err)
			}
			if c.Control.Socket != tt.wantSocket || c.StateDir != tt.wantDir {
				t.Errorf("socket %s, state_dir %s; want %s, %s", c.Control.Socket, c.StateDir, tt.wantSocket, tt.wantDir)
			}
		})
	}
}

func TestConsoleListen(t *testing.T) {
	e := newTestEnv(t)
	base := "profiles:\n  - name: p\n    host: h.example\nrules:\n  - action: direct\nmetrics:\n  listen: 127.0.0.1:9559\n"
	for _, tt := range []struct{ yaml, want string }{
		{"console:\n  listen: 127.0.0.1:9560\n", ""},
		{"console:\n  listen: localhost:9560\n", ""},
		{"console:\n  listen: 0.0.0.0:9560\n  allow_from: [192.168.50.0/24]\n", ""},
		{"console:\n  listen: 0.0.0.0:9560\n", ":9: console.listen 0.0.0.0:9560 is not a loopback address: add console.allow_from:"},
		{"console:\n  listen: 192.168.1.2:9560\n", ":9: console.listen 192.168.1.2:9560 is not a loopback address"},
		{"console:\n  listen: 9560\n", ":9: console.listen \"9560\": write ADDRESS:PORT"},
		{"console:\n  listen: 127.0.0.1:9559\n", ":9: console.listen 127.0.0.1:9559: metrics.listen is there already"},
		{"console:\n  allow_from: [10.0.0.0/8]\n", ":9: console.allow_from without console.listen"},
		{"console:\n  listen: 0.0.0.0:9560\n  allow_from: [lan]\n", ":9: console.allow_from [lan]: write networks"},
		{"console:\n  listn: 127.0.0.1:9560\n", "listen"},
	} {
		path := write(t, e.dir(), "c.yaml", base+tt.yaml)
		l, err := LoadLayers(Layers{Extra: []string{path}, Options: e.opts()})
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.yaml, err)
		case tt.want == "" && !l.Console.Addr.IsValid():
			t.Errorf("%q: no address", tt.yaml)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
