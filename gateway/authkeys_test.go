package gateway

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testKey makes a deterministic ed25519 public key from seed, and its
// authorized_keys text (without newline).
func testKey(t testing.TB, seed byte) (ssh.PublicKey, string) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(append(make([]byte, 31), seed))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func TestParseAuthorizedKeys(t *testing.T) {
	k1, l1 := testKey(t, 1)
	k2, l2 := testKey(t, 2)
	k3, _ := testKey(t, 3)
	data := strings.Join([]string{
		"# comment",
		"",
		l1 + " alice@laptop",
		`permitopen="10.0.0.1:22",permitopen="[2001:db8::1]:*",permitopen="db.internal:5432",from="192.0.2.0/24,!192.0.2.9,*.5" ` + l1 + " alice-restricted",
		`restrict,port-forwarding,no-pty,no-agent-forwarding,no-X11-forwarding,no-user-rc ` + l2 + "\r",
		`NO-PORT-FORWARDING ` + l2,
		`  ` + l2 + ` spaced   `,
	}, "\n")
	a, err := ParseAuthorizedKeys("keys", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 5 {
		t.Errorf("Len = %d, want 5", a.Len())
	}
	if got := a.Lookup(k3); got != nil {
		t.Errorf("Lookup(unknown) = %v", got)
	}
	e1 := a.Lookup(k1)
	if len(e1) != 2 || e1[0].Line != 3 || e1[1].Line != 4 || e1[0].Comment != "alice@laptop" {
		t.Fatalf("Lookup(k1) = %+v", e1)
	}
	if e1[0].PermitOpen != nil || e1[0].From != nil || e1[0].NoPortForwarding {
		t.Errorf("plain line has restrictions: %+v", e1[0])
	}
	if !e1[0].AllowsOpen("anything", 1) || !e1[0].AllowsFrom(netip.MustParseAddr("203.0.113.1")) {
		t.Error("plain line refuses")
	}
	r := e1[1]
	for _, tt := range []struct {
		host string
		port uint16
		ok   bool
	}{
		{"10.0.0.1", 22, true},
		{"10.0.0.1", 23, false},
		{"10.0.0.2", 22, false},
		{"2001:db8::1", 443, true},
		{"2001:db8:0::1", 1, true},
		{"[2001:db8::1]", 1, true},
		{"2001:db8::2", 443, false},
		{"db.internal", 5432, true},
		{"DB.internal", 5432, false},
		{"::ffff:10.0.0.1", 22, true},
	} {
		if got := r.AllowsOpen(tt.host, tt.port); got != tt.ok {
			t.Errorf("AllowsOpen(%s, %d) = %v, want %v", tt.host, tt.port, got, tt.ok)
		}
	}
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"192.0.2.1", true},
		{"192.0.2.9", false},
		{"::ffff:192.0.2.1", true},
		{"198.51.100.5", true}, // *.5
		{"198.51.100.6", false},
		{"2001:db8::5", false},
	} {
		if got := r.AllowsFrom(netip.MustParseAddr(tt.addr)); got != tt.ok {
			t.Errorf("AllowsFrom(%s) = %v, want %v", tt.addr, got, tt.ok)
		}
	}
	e2 := a.Lookup(k2)
	if len(e2) != 3 || e2[0].NoPortForwarding || !e2[1].NoPortForwarding || e2[2].NoPortForwarding {
		t.Fatalf("Lookup(k2) = %+v", e2)
	}
	if e2[1].AllowsOpen("10.0.0.1", 22) {
		t.Error("no-port-forwarding key may open")
	}
	if e2[2].Comment != "spaced" {
		t.Errorf("comment %q", e2[2].Comment)
	}
}

func TestAuthorizedKeysRestrictAlone(t *testing.T) {
	_, l := testKey(t, 1)
	a, err := ParseAuthorizedKeys("k", []byte(`restrict,permitopen="10.0.0.1:22" `+l))
	if err != nil {
		t.Fatal(err)
	}
	e := a.Lookup(a.byKeyAny())[0]
	if e.AllowsOpen("10.0.0.1", 22) {
		t.Error("restrict without port-forwarding lets the key open, unlike sshd")
	}
}

func (a *AuthorizedKeys) byKeyAny() ssh.PublicKey {
	for _, es := range a.byKey {
		return es[0].Key
	}
	return nil
}

func TestFromPatterns(t *testing.T) {
	for _, tt := range []struct {
		list, addr string
		ok         bool
	}{
		{"*", "10.0.0.1", true},
		{"10.0.0.?", "10.0.0.1", true},
		{"10.0.0.?", "10.0.0.10", false},
		{"10.*", "10.200.0.1", true},
		{"!10.0.0.1,10.0.0.0/8", "10.0.0.1", false},
		{"10.0.0.0/8,!10.0.0.1", "10.0.0.1", false},
		{"10.0.0.0/8,!10.0.0.1", "10.0.0.2", true},
		{"!10.0.0.1", "10.0.0.2", false},
		{"2001:db8::/32", "2001:db8::7", true},
		{"2001:DB8::*", "2001:db8::7", true},
		{"::ffff:10.0.0.0/104", "10.1.1.1", true},
		{"192.0.2.7", "192.0.2.7", true},
		{"fe80::/10", "fe80::1%eth0", true},
		{"*", "", false},
	} {
		ps, err := parsePatternList(tt.list)
		if err != nil {
			t.Errorf("parsePatternList(%q): %v", tt.list, err)
			continue
		}
		var addr netip.Addr // the zero Addr for ""
		if tt.addr != "" {
			addr = netip.MustParseAddr(tt.addr)
		}
		if got := matchFrom(ps, addr); got != tt.ok {
			t.Errorf("from=%q at %s = %v, want %v", tt.list, tt.addr, got, tt.ok)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tt := range []struct {
		s, p string
		ok   bool
	}{
		{"", "", true}, {"", "*", true}, {"a", "", false}, {"abc", "a*c", true},
		{"abc", "a*b", false}, {"abcbc", "*bc", true}, {"ab", "a?", true},
		{"a", "a?", false}, {"aaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*a*a*c", false},
	} {
		if got := globMatch(tt.s, tt.p); got != tt.ok {
			t.Errorf("globMatch(%q, %q) = %v", tt.s, tt.p, got)
		}
	}
}

func TestParseAuthorizedKeysErrors(t *testing.T) {
	_, l := testKey(t, 1)
	for _, tt := range []struct {
		line, want string
	}{
		{`command="/bin/true" ` + l, "option command: the gateway runs no commands"},
		{`tunnel="0" ` + l, "option tunnel"},
		{`environment="A=b" ` + l, "option environment"},
		{`principals="x" ` + l, "option principals"},
		{`cert-authority ` + l, "option cert-authority"},
		{`frobnicate ` + l, "unknown option frobnicate"},
		{`frob="x" ` + l, "unknown option frob"},
		{`permitopen="10.0.0.1" ` + l, "no port"},
		{`permitopen="10.0.0.1:0" ` + l, "from 1 to 65535"},
		{`permitopen="2001:db8::1:22" ` + l, "in brackets"},
		{`permitopen=10.0.0.1:22 ` + l, "double quotes"},
		{`permitopen ` + l, "needs a value"},
		{`from="10.0.0.1/8" ` + l, "write 10.0.0.0/8"},
		{`from="10.0.0.0/99" ` + l, "not a CIDR network"},
		{`from="a,,b" ` + l, "empty item"},
		{`from="a",from="b" ` + l, "given twice"},
		{"ssh-ed25519 AAAA", "not an authorized key"},
		{"just garbage", "not an authorized key"},
	} {
		data := "# first\n" + tt.line + "\n"
		_, err := ParseAuthorizedKeys("/etc/shunt/keys", []byte(data))
		var fe *Error
		if err == nil || !errors.As(err, &fe) {
			t.Errorf("%q: err = %v, want an *Error", tt.line, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), "/etc/shunt/keys:2: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want /etc/shunt/keys:2: ...%s", tt.line, err, tt.want)
		}
	}
}

func TestParseAuthorizedKeysAllErrors(t *testing.T) {
	_, l := testKey(t, 1)
	data := fmt.Sprintf("command=\"x\" %s\n%s\ntunnel=\"1\" %s\n", l, l, l)
	_, err := ParseAuthorizedKeys("k", []byte(data))
	if err == nil || !strings.Contains(err.Error(), "k:1:") || !strings.Contains(err.Error(), "k:3:") {
		t.Errorf("err = %v, want lines 1 and 3", err)
	}
}

func TestParseAuthorizedKeysCertificate(t *testing.T) {
	pub, _ := testKey(t, 1)
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{Key: pub, CertType: ssh.UserCert, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert)))
	_, err = ParseAuthorizedKeys("k", []byte(line))
	if err == nil || !strings.Contains(err.Error(), "a certificate") {
		t.Errorf("err = %v, want a certificate refused", err)
	}
}

func TestLoadAuthorizedKeys(t *testing.T) {
	k, l := testKey(t, 9)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(l+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAuthorizedKeys(path)
	if err != nil || len(a.Lookup(k)) != 1 || a.Lookup(k)[0].File != path {
		t.Fatalf("LoadAuthorizedKeys: %v, %v", a, err)
	}
	if _, err := LoadAuthorizedKeys(path + ".missing"); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("missing file: %v", err)
	}
}

func FuzzAuthorizedKeys(f *testing.F) {
	_, l := testKey(f, 1)
	f.Add([]byte(l + " c\n"))
	f.Add([]byte(`permitopen="10.0.0.1:22",from="10.0.0.0/8,!10.1.*" ` + l))
	f.Add([]byte(`restrict,port-forwarding,permitopen="[::1]:*" ` + l + "\n# x\n\n" + l))
	f.Add([]byte(`command="a\"b" ` + l))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := ParseAuthorizedKeys("f", data)
		if err != nil {
			if a != nil {
				t.Fatal("entries with an error")
			}
			return
		}
		for _, es := range a.byKey {
			for _, e := range es {
				if e.Line < 1 || e.Key == nil {
					t.Fatalf("bad entry %+v", e)
				}
				e.AllowsFrom(netip.MustParseAddr("10.0.0.1"))
				e.AllowsOpen("10.0.0.1", 22)
				for _, o := range e.PermitOpen {
					if _, err := parseOpenTarget(o.String()); err != nil {
						t.Fatalf("permitopen %q does not round-trip: %v", o, err)
					}
				}
			}
		}
	})
}

// TestAuthorizedKeysFromSSHKeygen reads the .pub files OpenSSH's
// ssh-keygen writes, of each key type, with options in front.
func TestAuthorizedKeysFromSSHKeygen(t *testing.T) {
	bin, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed")
	}
	dir := t.TempDir()
	var data strings.Builder
	var keys []ssh.PublicKey
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		path := filepath.Join(dir, "id_"+typ)
		out, err := exec.Command(bin, "-q", "-t", typ, "-N", "", "-C", "user@"+typ, "-f", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -t %s: %v: %s", typ, err, out)
		}
		pub, err := os.ReadFile(path + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
		data.WriteString(`restrict,port-forwarding,permitopen="127.0.0.1:*" `)
		data.Write(pub)
	}
	a, err := ParseAuthorizedKeys("k", []byte(data.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		es := a.Lookup(k)
		if len(es) != 1 || es[0].Line != i+1 || !es[0].AllowsOpen("127.0.0.1", 80) || es[0].AllowsOpen("127.0.0.2", 80) {
			t.Errorf("key %d (%s): %+v", i, k.Type(), es)
		}
	}
}
