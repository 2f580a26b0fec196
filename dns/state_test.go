package dns

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Log == nil {
		opts.Log, _ = quiet()
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPersistence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state", "fake-ips.json")
	opts := Options{Policy: corp, FakeRanges: []netip.Prefix{fake4, fake6}, StateFile: file}
	s := newServer(t, opts)
	want := map[string][]netip.Addr{}
	for _, n := range []string{"mail.corp.example", "a.corp.example", "b.corp.example"} {
		want[n] = s.Fake(n)
	}
	s.Host(want["a.corp.example"][0]) // a is the most recently used
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(file)
	var raw struct {
		Version int `json:"version"`
		Names   []struct {
			Name    string    `json:"name"`
			Addrs   []string  `json:"addrs"`
			LastUse time.Time `json:"last_use"`
		} `json:"names"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || raw.Version != 1 || len(raw.Names) != 3 || raw.Names[2].Name != "a.corp.example" || raw.Names[2].LastUse.IsZero() {
		t.Fatalf("state file (%v):\n%s", err, b)
	}
	if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	// shunt explain reads the table as it is on disk.
	table, err := ReadTable(file)
	if err != nil || len(table) != 3 || !slices.Equal(table["mail.corp.example"], want["mail.corp.example"]) {
		t.Errorf("ReadTable: %v, %v; want %v", table, err, want)
	}
	if table, err := ReadTable(file + ".missing"); err != nil || len(table) != 0 {
		t.Errorf("ReadTable of a missing file: %v, %v", table, err)
	}

	// Another process: the names keep their addresses, the LRU order
	// too.
	s = newServer(t, opts)
	s.mu.RLock()
	tail, head := s.tab.tail.name, s.tab.head.name
	s.mu.RUnlock()
	if tail != "mail.corp.example" || head != "a.corp.example" {
		t.Errorf("LRU order after restart: %s first, %s last", head, tail)
	}
	for n, a := range want {
		if got := s.Fake(n); !slices.Equal(got, a) {
			t.Errorf("%s after restart: %v, want %v", n, got, a)
		}
		if name, _ := s.Host(a[0]); name != n {
			t.Errorf("Host(%v) after restart = %q", a[0], name)
		}
	}
	s.Close()

	// Other ranges: the entries outside them are dropped.
	opts.FakeRanges = []netip.Prefix{fake6}
	s = newServer(t, opts)
	if got := s.Fake("mail.corp.example"); !slices.Equal(got, want["mail.corp.example"][1:]) {
		t.Errorf("with only the IPv6 range: %v", got)
	}
	if name, fake := s.Host(want["mail.corp.example"][0]); name != "" || fake {
		t.Errorf("an IPv4 address after the range went: %q %v", name, fake)
	}
	s.Close()
}

func TestStateDebounced(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fake-ips.json")
	s := newServer(t, Options{Policy: corp, FakeRanges: []netip.Prefix{fake4}, StateFile: file})
	defer s.Close()
	s.smu.Lock()
	s.saveDelay = time.Millisecond
	s.smu.Unlock()
	s.Fake("mail.corp.example")
	// Saved without Close, soon.
	for i := 0; ; i++ {
		b, err := os.ReadFile(file)
		if err == nil && strings.Contains(string(b), "mail.corp.example") {
			break
		}
		if i == 2000 {
			t.Fatalf("not saved: %v %s", err, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A use alone does not rewrite the file (Close saves it).
	s.Fake("mail.corp.example")
	s.smu.Lock()
	pending := s.saveTimer != nil && s.dirty
	s.smu.Unlock()
	if pending {
		t.Error("a use scheduled a save")
	}
}

func TestStateInvalid(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fake-ips.json")
	for _, bad := range []string{"{not json", `{"version": 9, "names": []}`, `{"version": 1, "names": []} trailing`, ""} {
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		l, hook := quiet()
		s := newServer(t, Options{Policy: corp, FakeRanges: []netip.Prefix{fake4}, StateFile: file, Log: l})
		if st := s.Stats(); st.Names != 0 {
			t.Errorf("%q: %d names", bad, st.Names)
		}
		var moved string
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, "moved it aside") {
				moved, _ = e.Data["moved_to"].(string)
			}
		}
		if moved == "" {
			t.Fatalf("%q: no log line says where the file went: %v", bad, hook.AllEntries())
		}
		if b, err := os.ReadFile(moved); err != nil || string(b) != bad {
			t.Errorf("%q: the bad file is not kept at %s: %v %q", bad, moved, err, b)
		}
		s.Close()
	}
	// Each bad file is kept, even two in the same second.
	if aside, _ := filepath.Glob(file + ".invalid-*"); len(aside) != 4 {
		t.Errorf("files moved aside: %v", aside)
	}

	// Bad entries are dropped one by one.
	good := netip.MustParseAddr("198.18.0.7")
	st := stateFile{Version: 1, Names: []stateEntry{
		{Name: "mail.corp.example", Addrs: []netip.Addr{good}, LastUse: time.Now()},
		{Name: "dup.corp.example", Addrs: []netip.Addr{good}},                                                                   // address taken
		{Name: "net.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.0")}},                                      // network address
		{Name: "bcast.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("198.19.255.255")}},                                // broadcast
		{Name: "out.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}},                                        // outside
		{Name: "bad name", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.9")}},                                              // not a name
		{Name: "two.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")}}, // two IPv4
		{Name: "mail.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.12")}},                                    // name taken
		{Name: "ok.corp.example", Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.13")}},
	}}
	b, _ := json.Marshal(st)
	os.WriteFile(file, b, 0o600)
	s := newServer(t, Options{Policy: corp, FakeRanges: []netip.Prefix{fake4}, StateFile: file})
	defer s.Close()
	if n := s.Stats().Names; n != 2 {
		t.Errorf("%d names loaded, want 2", n)
	}
	if name, _ := s.Host(good); name != "mail.corp.example" {
		t.Errorf("Host(%v) = %q", good, name)
	}
	if got := s.Fake("ok.corp.example"); !slices.Equal(got, []netip.Addr{netip.MustParseAddr("198.18.0.13")}) {
		t.Errorf("ok: %v", got)
	}
	// New names do not take loaded addresses.
	for i := range 20 {
		for _, a := range s.Fake(strings.Repeat("x", i+1) + ".corp.example") {
			if a == good || a == netip.MustParseAddr("198.18.0.13") {
				t.Errorf("a new name took %v", a)
			}
		}
	}
}

// A reload keeps the table: the integrator's SetPolicy on SIGHUP, then a
// query answered with the same address.
func TestReloadKeepsTable(t *testing.T) {
	ts := start(t, Options{Policy: corp})
	before := addrs(ts.ask(t, "udp", "mail.corp.example.", mdns.TypeA, 0))
	if err := ts.SetPolicy(corp, []netip.Prefix{fake4, fake6}); err != nil {
		t.Fatal(err)
	}
	if after := addrs(ts.ask(t, "udp", "mail.corp.example.", mdns.TypeA, 0)); !slices.Equal(before, after) {
		t.Errorf("before the reload %v, after %v", before, after)
	}
}

func FuzzState(f *testing.F) {
	for _, seed := range []string{
		`{"version":1,"names":[{"name":"mail.corp.example","addrs":["198.18.0.1","fd53:6875:6e74:fa6e::1"],"last_use":"2026-01-02T03:04:05Z"}]}`,
		`{"version":1,"names":[]}`,
		`{"version":2}`,
		`{"version":1,"names":[{"name":"a","addrs":["198.18.0.1"]},{"name":"b","addrs":["198.18.0.1"]}]}`,
		`not json`,
	} {
		f.Add([]byte(seed))
	}
	ranges := []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30"), netip.MustParsePrefix("fd53:6875:6e74:fa6e::/126")}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err != nil {
			return
		}
		pools, _ := checkRanges(ranges)
		s := &Server{tab: newTable(pools, 4), epoch: time.Now()}
		s.loadEntries(st.Names)
		// What was loaded is consistent: unique names and addresses,
		// each usable, each entry in both maps.
		if len(s.tab.byName) > 4 {
			t.Fatalf("%d names in a table of 4", len(s.tab.byName))
		}
		n := 0
		for e := s.tab.head; e != nil; e = e.next {
			n++
			if s.tab.byName[e.name] != e {
				t.Fatalf("%s not in byName", e.name)
			}
			for f, a := range e.addr {
				if a.IsValid() && (s.tab.byAddr[a] != e || !s.tab.pools[f].valid(a)) {
					t.Fatalf("%s: %v", e.name, a)
				}
			}
		}
		if n != len(s.tab.byName) {
			t.Fatalf("list %d, map %d", n, len(s.tab.byName))
		}
		// New names still get addresses.
		for _, name := range []string{"n1", "n2", "n3", "n4", "n5"} {
			if e, _ := s.tab.ensure(name, s.clock()); !e.addr[v4].IsValid() || !e.addr[v6].IsValid() {
				t.Fatalf("%s got %v", name, e.addr)
			}
		}
	})
}
