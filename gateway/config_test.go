package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseConfig(t *testing.T) {
	data := `# gateway
listen: [":2200", "[::1]:2201"]
host_key: keys/host_ed25519
authorized_keys: /etc/shunt/authorized_keys
permit:
  - 10.0.0.0/8:22,443
  - 192.0.2.7
max_startups: "5:50:20"
max_auth_tries: 3
login_grace_time: 30s
`
	c, err := Parse("/etc/shunt/gateway.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := ParsePermit([]string{"10.0.0.0/8:22,443", "192.0.2.7"})
	want := &Config{
		Listen:         []string{":2200", "[::1]:2201"},
		HostKey:        "/etc/shunt/keys/host_ed25519",
		AuthorizedKeys: "/etc/shunt/authorized_keys",
		Permit:         p,
		MaxStartups:    MaxStartups{5, 50, 20},
		MaxAuthTries:   3,
		LoginGraceTime: 30 * time.Second,
	}
	if diff := cmp.Diff(want, c, cmp.Comparer(func(a, b Entry) bool { return a.String() == b.String() })); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	for _, data := range []string{"", "# only a comment\n", "---\n", "~\n"} {
		c, err := Parse("g.yaml", []byte(data))
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		want := DefaultConfig()
		if diff := cmp.Diff(&want, c); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", data, diff)
		}
		if c.MaxStartups.String() != "10:30:100" || c.LoginGraceTime != 120*time.Second || c.MaxAuthTries != 6 || c.Listen[0] != ":2222" {
			t.Errorf("defaults: %+v", c)
		}
	}
}

func TestParseConfigValues(t *testing.T) {
	for _, tt := range []struct {
		data  string
		check func(*Config) bool
	}{
		{"login_grace_time: 90\n", func(c *Config) bool { return c.LoginGraceTime == 90*time.Second }},
		{"login_grace_time: 0\n", func(c *Config) bool { return c.LoginGraceTime == 0 }},
		{"login_grace_time: 2m\n", func(c *Config) bool { return c.LoginGraceTime == 2*time.Minute }},
		{"max_startups: 7\n", func(c *Config) bool { return c.MaxStartups == MaxStartups{7, 100, 7} }},
		{"permit: []\n", func(c *Config) bool { return len(c.Permit) == 0 }},
		{"host_key: host\n", func(c *Config) bool { return c.HostKey == filepath.Join("d", "host") }},
	} {
		c, err := Parse(filepath.Join("d", "g.yaml"), []byte(tt.data))
		if err != nil || !tt.check(c) {
			t.Errorf("Parse(%q) = %+v, %v", tt.data, c, err)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		data, want string
	}{
		{"listen: [\":2222\"]\nlistn: x\n", `g.yaml:2: unknown key "listn": did you mean listen?`},
		{"max-auth-tries: 3\n", "did you mean max_auth_tries?"},
		{"frobnicate: 1\n", "the keys are listen, host_key"},
		{"listen: :2222\n", "g.yaml:1: listen must be a list"},
		{"listen: []\n", "listen is empty"},
		{"listen:\n  - \":2222\"\n  - localhost\n", `g.yaml:3: listen "localhost": write HOST:PORT`},
		{"listen: [\":0\"]\n", "from 1 to 65535"},
		{"host_key: [a]\n", "host_key must be a file path"},
		{"authorized_keys: \"\"\n", "authorized_keys must be a file path"},
		{"permit:\n  - 10.0.0.0/8\n  - 10.0.0.0/8:0\n", `g.yaml:3: permit entry "10.0.0.0/8:0"`},
		{"permit: 10.0.0.0/8\n", "permit must be a list"},
		{"max_startups: \"10:30\"\n", "has 2 parts"},
		{"max_startups: \"10:130:100\"\n", "at most 100"},
		{"max_startups: \"100:30:10\"\n", "start 100 is above full 10"},
		{"max_startups: \"a:b:c\"\n", "write start:rate:full"},
		{"max_auth_tries: 0\n", "max_auth_tries must be a whole number"},
		{"max_auth_tries: six\n", "max_auth_tries must be a whole number"},
		{"login_grace_time: -1s\n", "login_grace_time"},
		{"login_grace_time: soon\n", "write a duration"},
		{"listen: [\":1\"]\nlisten: [\":2\"]\n", "g.yaml:2: listen is set twice (first on line 1)"},
		{"- a\n", "must be a mapping"},
		{"listen: [\n", "g.yaml:"},
		{"a: 1\n---\nb: 2\n", "second YAML document"},
		{"\tlisten: x\n", "not valid YAML"},
	} {
		_, err := Parse("g.yaml", []byte(tt.data))
		var fe *Error
		if err == nil || !errors.As(err, &fe) {
			t.Errorf("Parse(%q) = %v, want an *Error", tt.data, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.data, err, tt.want)
		}
	}
}

func TestParseConfigAllErrors(t *testing.T) {
	_, err := Parse("g.yaml", []byte("max_auth_tries: 0\nlisten: x\nbad: 1\n"))
	for _, want := range []string{"g.yaml:1:", "g.yaml:2:", "g.yaml:3:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %s", err, want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte("authorized_keys: keys\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.AuthorizedKeys != filepath.Join(dir, "keys") {
		t.Fatalf("Load = %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("missing: %v", err)
	}
}

func TestParseMaxStartups(t *testing.T) {
	for _, s := range []string{"", ":", "1:2:3:4", "0:30:100", "10:0:100", "-1"} {
		if m, err := ParseMaxStartups(s); err == nil {
			t.Errorf("ParseMaxStartups(%q) = %v", s, m)
		}
	}
}

func FuzzConfig(f *testing.F) {
	f.Add([]byte("listen: [\":2222\"]\npermit: [10.0.0.0/8:22]\nmax_startups: \"10:30:100\"\n"))
	f.Add([]byte("login_grace_time: 2m\nmax_auth_tries: 3\nhost_key: k\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("listen: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("config with an error")
			}
			return
		}
		if len(c.Listen) == 0 || c.MaxAuthTries < 1 || c.LoginGraceTime < 0 {
			t.Fatalf("invalid config accepted: %+v", c)
		}
		m := c.MaxStartups
		if m.Start < 1 || m.Start > m.Full || m.Rate < 1 || m.Rate > 100 {
			t.Fatalf("invalid max_startups accepted: %v", m)
		}
	})
}

// TestExampleConfig keeps examples/gateway.yaml valid.
func TestExampleConfig(t *testing.T) {
	c, err := Load("../examples/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Permit) != 3 || c.HostKey != "/etc/shunt/gateway_host_ed25519" || c.MaxStartups.String() != "10:30:100" {
		t.Errorf("examples/gateway.yaml = %+v", c)
	}
}
