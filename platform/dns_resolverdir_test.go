package platform

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/internal/netlayout"
)

// dirFiles returns dir's files as "name: text" in name order; "" when dir
// is missing.
func dirFiles(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "(no directory)"
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Name()+": "+string(data))
	}
	return strings.Join(out, "")
}

func shuntDNSConfig(domains ...string) DNSConfig {
	return DNSConfig{Nameservers: netlayout.DNSAddrs(), Domains: domains, Device: "utun7"}
}

// testPID is the pid the tests' resolver files are written by.
const testPID = 4242

const shuntResolverText = "# written by shunt; removed when shunt stops\n# pid 4242\nnameserver 169.254.83.53\nnameserver fd53:6875:6e74::53\n"

func TestResolverDirSetAndClose(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "resolver") // missing, as on a fresh Mac
	log, _ := hookedLog()
	r := newResolverDirDNS(dir, testPID, []netip.AddrPort{netip.MustParseAddrPort("192.168.1.1:53")}, log)
	if r.Mode() != DNSModeResolverDir {
		t.Errorf("mode %s", r.Mode())
	}
	if err := r.Set(shuntDNSConfig("Corp.Example.", "db.lab.example", "corp.example")); err != nil {
		t.Fatal(err)
	}
	want := "corp.example: " + shuntResolverText + "db.lab.example: " + shuntResolverText
	if got := dirFiles(t, dir); got != want {
		t.Errorf("files:\n%s\nwant:\n%s", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, "corp.example")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode: %v %v", fi.Mode(), err)
	}
	// A reload: one domain goes, one comes.
	if err := r.Set(shuntDNSConfig("corp.example", "new.example")); err != nil {
		t.Fatal(err)
	}
	want = "corp.example: " + shuntResolverText + "new.example: " + shuntResolverText
	if got := dirFiles(t, dir); got != want {
		t.Errorf("after the reload:\n%s\nwant:\n%s", got, want)
	}
	// Nothing of shunt's temporary files is left beside the directory.
	if entries, _ := os.ReadDir(filepath.Dir(dir)); len(entries) != 1 {
		t.Errorf("beside the directory: %v", entries)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := dirFiles(t, dir); got != "(no directory)" {
		t.Errorf("after Close (shunt made the directory):\n%s", got)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := r.Upstreams(); len(got) != 1 || got[0].String() != "192.168.1.1:53" {
		t.Errorf("upstreams %v", got)
	}
}

func TestResolverDirLeavesOthersFiles(t *testing.T) {
	dir := t.TempDir()
	vpn := "nameserver 10.8.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "vpn.example"), []byte(vpn), 0o644); err != nil {
		t.Fatal(err)
	}
	log, hook := hookedLog()
	r := newResolverDirDNS(dir, testPID, nil, log)
	err := r.Set(shuntDNSConfig("corp.example", "vpn.example"))
	if err == nil || !strings.Contains(err.Error(), "not shunt's") || !strings.Contains(err.Error(), filepath.Join(dir, "vpn.example")) {
		t.Errorf("Set over another's file: %v", err)
	}
	// Someone replaces shunt's file while it runs.
	if err := r.Set(shuntDNSConfig("corp.example")); err != nil {
		t.Fatal(err)
	}
	mine := "nameserver 10.9.9.9\n"
	if err := os.WriteFile(filepath.Join(dir, "corp.example"), []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := dirFiles(t, dir), "corp.example: "+mine+"vpn.example: "+vpn; got != want {
		t.Errorf("after Close:\n%s\nwant:\n%s", got, want)
	}
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "replaced") {
		t.Errorf("no warning of the replaced file: %v", e)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the directory shunt did not make went: %v", err)
	}
}

func TestResolverDirRefuses(t *testing.T) {
	dir := t.TempDir()
	log, _ := hookedLog()
	r := newResolverDirDNS(dir, testPID, nil, log)
	for _, tc := range []struct {
		cfg  DNSConfig
		want string
	}{
		{shuntDNSConfig(), "not supported on macOS yet"},
		{DNSConfig{Domains: []string{"corp.example"}}, "without a nameserver"},
		{shuntDNSConfig("../etc"), "not a DNS name"},
		{shuntDNSConfig("a/b"), "not a DNS name"},
	} {
		if err := r.Set(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%v): %v, want %q", tc.cfg.Domains, err, tc.want)
		}
	}
	if got := dirFiles(t, dir); got != "" {
		t.Errorf("files written:\n%s", got)
	}
}

func TestCleanUpResolverDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"corp.example":  shuntResolverText,
		"crlf.example":  strings.ReplaceAll(shuntResolverText, "\n", "\r\n"),
		"vpn.example":   "nameserver 10.8.0.1\n",
		"later.example": "nameserver 10.8.0.1\n" + resolverMarker + "\n", // the marker only counts first
		"empty.example": "",
		// A shunt that runs still, on another utun.
		"other.example": strings.Replace(shuntResolverText, "# pid 4242", "# pid 77", 1),
		// One that crashed.
		"dead.example": strings.Replace(shuntResolverText, "# pid 4242", "# pid 78", 1),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.example"), 0o755); err != nil {
		t.Fatal(err)
	}
	running := func(pid int) bool { return pid == 77 }
	removed, err := cleanUpResolverDir(dir, running)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []string{filepath.Join(dir, "corp.example"), filepath.Join(dir, "crlf.example"), filepath.Join(dir, "dead.example")}; !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	entries, _ := os.ReadDir(dir)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if fmt.Sprint(left) != "[empty.example later.example other.example sub.example vpn.example]" {
		t.Errorf("left %v", left)
	}
	if removed, err := cleanUpResolverDir(filepath.Join(dir, "missing"), running); err != nil || removed != nil {
		t.Errorf("missing directory: %v %v", removed, err)
	}
}

const scutilSample = `DNS configuration

resolver #1
  search domain[0] : lan
  nameserver[0] : 192.168.1.1
  nameserver[1] : fe80::1%en0
  nameserver[2] : 169.254.83.53
  if_index : 6 (en0)
  flags    : Request A records, Request AAAA records
  reach    : 0x00020002 (Reachable,Directly Reachable Address)

resolver #2
  domain   : local
  options  : mdns
  timeout  : 5
  flags    : Request A records, Request AAAA records
  reach    : 0x00000000 (Not Reachable)
  order    : 300000

resolver #3
  domain   : Corp.Example.
  nameserver[0] : 169.254.83.53
  nameserver[1] : fd53:6875:6e74::53
  port     : 5353
  flags    : Request A records, Request AAAA records
  reach    : 0x00000003 (Reachable,Transient Connection)

resolver #4
  nameserver[0] : 10.0.0.2
  port     : 5300

DNS configuration (for scoped queries)

resolver #1
  search domain[0] : lan
  nameserver[0] : 192.168.7.1
  if_index : 6 (en0)
  flags    : Scoped, Request A records, Request AAAA records
  reach    : 0x00020002 (Reachable,Directly Reachable Address)
`

func TestParseScutilDNS(t *testing.T) {
	rs := parseScutilDNS([]byte(strings.ReplaceAll(scutilSample, "\n", "\r\n")))
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("scoped=%v domain=%q ns=%v port=%d", r.Scoped, r.Domain, r.Nameservers, r.Port))
	}
	want := []string{
		`scoped=false domain="" ns=[192.168.1.1 fe80::1%en0 169.254.83.53] port=0`,
		`scoped=false domain="local" ns=[] port=0`,
		`scoped=false domain="corp.example" ns=[169.254.83.53 fd53:6875:6e74::53] port=5353`,
		`scoped=false domain="" ns=[10.0.0.2] port=5300`,
		`scoped=true domain="" ns=[192.168.7.1] port=0`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("parsed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	up := fmt.Sprint(scutilUpstreams(rs))
	if up != "[192.168.1.1:53 [fe80::1%en0]:53 10.0.0.2:5300]" {
		t.Errorf("upstreams %s", up)
	}
}

// scutilRunner answers scutil --dns with out, or fails.
type scutilRunner struct {
	out string
	err error
}

func (s scutilRunner) run(args ...string) ([]byte, error) {
	if strings.Join(args, " ") != "scutil --dns" {
		return nil, fmt.Errorf("unexpected command %q", args)
	}
	return []byte(s.out), s.err
}

func TestSystemUpstreams(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("# macOS's mirror\nnameserver 192.168.1.254\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		r    runner
		rc   string
		want string
	}{
		{"scutil", scutilRunner{out: scutilSample}, rc, "[192.168.1.1:53 [fe80::1%en0]:53 10.0.0.2:5300]"},
		{"scutil fails", scutilRunner{err: errors.New("exit status 1")}, rc, "[192.168.1.254:53]"},
		{"scutil names none", scutilRunner{out: "DNS configuration\n\nNo DNS configuration available\n"}, rc, "[192.168.1.254:53]"},
		{"neither", scutilRunner{err: errors.New("exit status 1")}, filepath.Join(t.TempDir(), "none"), "[]"},
	} {
		if got := fmt.Sprint(systemUpstreams(tc.r, tc.rc)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func FuzzParseScutilDNS(f *testing.F) {
	f.Add([]byte(scutilSample))
	f.Add([]byte("resolver #1\n  nameserver[0] : 169.254.83.53\n  port : 99999\n"))
	f.Add([]byte("DNS configuration\nresolver #\n:\n domain :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs := parseScutilDNS(data)
		for _, ap := range scutilUpstreams(rs) {
			if isOwnAddr(ap.Addr()) || ap.Port() == 0 {
				t.Fatalf("upstream %v", ap)
			}
		}
	})
}

func FuzzIsShuntResolverFile(f *testing.F) {
	f.Add([]byte(shuntResolverText))
	f.Add([]byte("nameserver 10.0.0.1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if isShuntResolverFile(data) && !strings.HasPrefix(string(data), resolverMarker) {
			t.Fatalf("%q counts as shunt's", data)
		}
		if pid := writerPID(data); pid < 0 || pid != 0 && !strings.Contains(string(data), "# pid ") {
			t.Fatalf("%q: writer pid %d", data, pid)
		}
	})
}

func TestResolverDirModeIsMacOSs(t *testing.T) {
	if runtime.GOOS == "darwin" {
		t.Skip("resolver-dir is this system's mode")
	}
	_, err := DNSOptions{Mode: DNSModeResolverDir}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "macOS") {
		t.Errorf("resolver-dir on %s: %v", runtime.GOOS, err)
	}
}
