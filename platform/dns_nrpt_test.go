package platform

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"
)

// fakeRegistry is HKEY_LOCAL_MACHINE as a map of keys to their values,
// recording each write, delete, refresh and flush.
type fakeRegistry struct {
	keys    map[string][]regValue
	calls   []string
	failOn  map[string]error // by "op path"
	flushes int
}

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{keys: map[string][]regValue{}, failOn: map[string]error{}}
}

func (r *fakeRegistry) SubKeys(path string) ([]string, error) {
	if err := r.failOn["list "+path]; err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for k := range r.keys {
		rest, ok := strings.CutPrefix(k, path+`\`)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, `\`)
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out, nil
}

func (r *fakeRegistry) WriteKey(path string, values []regValue) error {
	var vs []string
	for _, v := range values {
		vs = append(vs, v.String())
	}
	r.calls = append(r.calls, "write "+path+": "+strings.Join(vs, "; "))
	if err := r.failOn["write "+path]; err != nil {
		return err
	}
	// Parents exist as keys of their own.
	for p := path; strings.Contains(p, `\`); p = p[:strings.LastIndex(p, `\`)] {
		if _, ok := r.keys[p]; !ok {
			r.keys[p] = nil
		}
	}
	r.keys[path] = values
	return nil
}

func (r *fakeRegistry) DeleteKey(path string) error {
	r.calls = append(r.calls, "delete "+path)
	if err := r.failOn["delete "+path]; err != nil {
		return err
	}
	for k := range r.keys {
		if strings.HasPrefix(k, path+`\`) {
			return fmt.Errorf("key %s has subkeys", path)
		}
	}
	delete(r.keys, path)
	return nil
}

func (r *fakeRegistry) RefreshPolicy() error {
	r.calls = append(r.calls, "RefreshPolicyEx")
	return r.failOn["refresh"]
}

func (r *fakeRegistry) FlushCache() error {
	r.flushes++
	return r.failOn["flush"]
}

func (r *fakeRegistry) take() string {
	c := strings.Join(r.calls, "\n")
	r.calls = nil
	return c
}

// rules are the keys under base, with their values, as text.
func (r *fakeRegistry) rules(base string) string {
	var out []string
	for k, vs := range r.keys {
		if name, ok := strings.CutPrefix(k, base+`\`); ok && !strings.Contains(name, `\`) {
			var s []string
			for _, v := range vs {
				s = append(s, v.String())
			}
			out = append(out, name+": "+strings.Join(s, "; "))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func dnsCfg(domains ...string) DNSConfig {
	return DNSConfig{Nameservers: []netip.Addr{netip.MustParseAddr("fd53:6875:6e74::53"), netip.MustParseAddr("169.254.83.53")}, Domains: domains, Device: "shunt0"}
}

const (
	local = `SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig`
	gp    = `SOFTWARE\Policies\Microsoft\Windows NT\DNSClient\DnsPolicyConfig`
	key0  = `{5368756e-7400-4000-8000-000000000000}`
	key1  = `{5368756e-7400-4000-8000-000000000001}`
)

// The rule for some domains: each domain and the names under it, to the
// servers IPv4 first, with the values the NRPT wants.
func TestNRPTSetWrites(t *testing.T) {
	reg := newFakeRegistry()
	d := &nrptDNS{reg: reg, log: winQuiet()}
	if err := d.Set(dnsCfg("Corp.Example.", "lab.test", "corp.example")); err != nil {
		t.Fatal(err)
	}
	want := `write ` + local + `\` + key0 + `: Version REG_DWORD 0x1; Name REG_MULTI_SZ ".corp.example" "corp.example" ".lab.test" "lab.test"; GenericDNSServers REG_SZ "169.254.83.53;fd53:6875:6e74::53"; ConfigOptions REG_DWORD 0x8`
	if got := reg.take(); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if reg.flushes != 1 {
		t.Errorf("%d flushes of the DNS cache, want 1", reg.flushes)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := reg.take(), `delete `+local+`\`+key0; got != want {
		t.Errorf("Close's calls:\n%s\nwant:\n%s", got, want)
	}
	if err := d.Close(); err != nil || reg.take() != "" {
		t.Errorf("a second Close: %v", err)
	}
}

// Without domains, one rule covers every name.
func TestNRPTEveryName(t *testing.T) {
	rules, err := nrptRules(dnsCfg())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 1 || !slices.Equal(rules[0].Values[1].Strs, []string{"."}) {
		t.Errorf("rules %v, want one for \".\"", rules)
	}
	if _, err := nrptRules(DNSConfig{Domains: []string{"a.test"}}); err == nil {
		t.Error("a config without servers made rules")
	}
	if _, err := nrptRules(DNSConfig{Nameservers: []netip.Addr{netip.MustParseAddr("169.254.83.53")}, Domains: []string{"bad domain"}}); err == nil {
		t.Error("a bad domain made rules")
	}
}

// More names than a rule holds make more rules; fewer later remove the
// surplus.
func TestNRPTManyDomains(t *testing.T) {
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("d%02d.test", i))
	}
	rules, err := nrptRules(dnsCfg(many...))
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) != 2 || len(rules[0].Values[1].Strs) != 50 || len(rules[1].Values[1].Strs) != 10 {
		t.Fatalf("%d rules; want 2, of 50 and 10 names", len(rules))
	}
	if rules[0].Key != key0 || rules[1].Key != key1 {
		t.Errorf("keys %s, %s", rules[0].Key, rules[1].Key)
	}
	reg := newFakeRegistry()
	d := &nrptDNS{reg: reg, log: winQuiet()}
	if err := d.Set(dnsCfg(many...)); err != nil {
		t.Fatal(err)
	}
	reg.take()
	if err := d.Set(dnsCfg("one.test")); err != nil {
		t.Fatal(err)
	}
	want := `write ` + local + `\` + key0 + `: Version REG_DWORD 0x1; Name REG_MULTI_SZ ".one.test" "one.test"; GenericDNSServers REG_SZ "169.254.83.53;fd53:6875:6e74::53"; ConfigOptions REG_DWORD 0x8
delete ` + local + `\` + key1
	if got := reg.take(); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
}

// Each config, whatever came before, leaves exactly its rules, and others'
// rules are never touched: configs applied in random order.
func TestNRPTRandomOrder(t *testing.T) {
	var many []string
	for i := range 60 {
		many = append(many, fmt.Sprintf("d%02d.test", i))
	}
	configs := [][]string{nil, {"a.test"}, {"a.test", "b.test"}, many, many[:25], many[:26]}
	reg := newFakeRegistry()
	other := `{11111111-2222-3333-4444-555555555555}`
	reg.keys[local+`\`+other] = []regValue{{Name: "Name", Kind: regMultiSZ, Strs: []string{".vpn.example"}}}
	d := &nrptDNS{reg: reg, log: winQuiet()}
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		domains := configs[r.IntN(len(configs))]
		if err := d.Set(dnsCfg(domains...)); err != nil {
			t.Fatal(err)
		}
		rules, _ := nrptRules(dnsCfg(domains...))
		var want []string
		for _, rl := range rules {
			var s []string
			for _, v := range rl.Values {
				s = append(s, v.String())
			}
			want = append(want, rl.Key+": "+strings.Join(s, "; "))
		}
		want = append(want, other+`: Name REG_MULTI_SZ ".vpn.example"`)
		slices.Sort(want)
		if got := reg.rules(local); got != strings.Join(want, "\n") {
			t.Fatalf("after %d domains: rules\n%s\nwant\n%s", len(domains), got, strings.Join(want, "\n"))
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := reg.rules(local); got != other+`: Name REG_MULTI_SZ ".vpn.example"` {
		t.Errorf("after Close: %s; want only the other rule", got)
	}
}

// Where group policy has NRPT rules, shunt's go there too, and group
// policy is refreshed; once group policy's own go, so do shunt's copies
// and the then empty key.
func TestNRPTGroupPolicy(t *testing.T) {
	reg := newFakeRegistry()
	theirs := gp + `\{aaaaaaaa-0000-0000-0000-000000000000}`
	reg.keys[gp] = nil
	reg.keys[theirs] = []regValue{{Name: "Name", Kind: regMultiSZ, Strs: []string{".corp"}}}
	d := &nrptDNS{reg: reg, log: winQuiet()}
	if err := d.Set(dnsCfg("a.test")); err != nil {
		t.Fatal(err)
	}
	values := `Version REG_DWORD 0x1; Name REG_MULTI_SZ ".a.test" "a.test"; GenericDNSServers REG_SZ "169.254.83.53;fd53:6875:6e74::53"; ConfigOptions REG_DWORD 0x8`
	want := "write " + local + `\` + key0 + ": " + values + "\nwrite " + gp + `\` + key0 + ": " + values + "\nRefreshPolicyEx"
	if got := reg.take(); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	// Group policy drops its rule.
	delete(reg.keys, theirs)
	if err := d.Set(dnsCfg("a.test")); err != nil {
		t.Fatal(err)
	}
	want = "write " + local + `\` + key0 + ": " + values + "\ndelete " + gp + `\` + key0 + "\ndelete " + gp + "\nRefreshPolicyEx"
	if got := reg.take(); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	// A failed refresh says how to do it by hand.
	reg.keys[theirs] = nil
	reg.failOn["refresh"] = errors.New("Access is denied.")
	if err := d.Set(dnsCfg("a.test")); err == nil || !strings.Contains(err.Error(), "RefreshPolicyEx") || !strings.Contains(err.Error(), "gpupdate") {
		t.Errorf("failed refresh: %v", err)
	}
}

// CleanUpDNS removes shunt's rules, in both keys, and nobody else's.
func TestNRPTCleanUp(t *testing.T) {
	reg := newFakeRegistry()
	other := local + `\{11111111-2222-3333-4444-555555555555}`
	reg.keys[other] = nil
	reg.keys[gp+`\{AAAAAAAA-0000-0000-0000-000000000000}`] = nil
	reg.keys[local+`\`+key0] = nil
	reg.keys[local+`\{5368756E-7400-4000-8000-000000000003}`] = nil // upper case
	reg.keys[gp+`\`+key0] = nil
	log, hook := test.NewNullLogger()
	if err := cleanUpNRPT(reg, log); err != nil {
		t.Fatal(err)
	}
	want := "delete " + local + `\{5368756E-7400-4000-8000-000000000003}` + "\ndelete " + local + `\` + key0 + "\ndelete " + gp + `\` + key0 + "\nRefreshPolicyEx"
	if got := reg.take(); got != want {
		t.Errorf("calls:\n%s\nwant:\n%s", got, want)
	}
	if e := hook.LastEntry(); e == nil || e.Data["removed"] != 3 {
		t.Errorf("logged %v, want the 3 removed", e)
	}
	// Nothing left: nothing done, nothing said.
	hook.Reset()
	if err := cleanUpNRPT(reg, log); err != nil || reg.take() != "" || len(hook.AllEntries()) != 0 {
		t.Errorf("second clean-up: %v", err)
	}
	if _, ok := reg.keys[other]; !ok {
		t.Error("another program's rule was removed")
	}
}

// Errors name the key and the way out; a failed flush only warns.
func TestNRPTErrors(t *testing.T) {
	reg := newFakeRegistry()
	reg.failOn["write "+local+`\`+key0] = errors.New("Access is denied.")
	d := &nrptDNS{reg: reg, log: winQuiet()}
	if err := d.Set(dnsCfg("a.test")); err == nil || !strings.Contains(err.Error(), `writing rule HKLM\`+local+`\`+key0+": Access is denied. (shunt must run as an administrator") {
		t.Errorf("Set: %v", err)
	}
	reg = newFakeRegistry()
	reg.failOn["flush"] = errors.New("nope")
	log, hook := test.NewNullLogger()
	d = &nrptDNS{reg: reg, log: log}
	if err := d.Set(dnsCfg("a.test")); err != nil {
		t.Errorf("Set with a failing flush: %v", err)
	}
	if e := hook.LastEntry(); e == nil || !strings.Contains(e.Message, "DnsFlushResolverCache") {
		t.Errorf("logged %v", e)
	}
	if d.Mode() != DNSModeNRPT {
		t.Errorf("Mode %s", d.Mode())
	}
}

// The upstreams leave out shunt's own addresses and Windows' placeholders.
func TestNRPTUpstreams(t *testing.T) {
	var in []netip.Addr
	for _, s := range []string{"192.168.1.1", "fec0:0:0:ffff::1%1", "fec0:0:0:ffff::3", "169.254.83.53", "2001:db8::53", "192.168.1.1", "::ffff:10.0.0.53", "0.0.0.0", "fec0:0:0:ffff::4"} {
		in = append(in, netip.MustParseAddr(s))
	}
	var got []string
	for _, ap := range nrptUpstreams(in) {
		got = append(got, ap.String())
	}
	want := []string{"192.168.1.1:53", "[2001:db8::53]:53", "10.0.0.53:53", "[fec0:0:0:ffff::4]:53"}
	if !slices.Equal(got, want) {
		t.Errorf("upstreams %q, want %q", got, want)
	}
	d := &nrptDNS{up: nrptUpstreams(in)}
	u := d.Upstreams()
	u[0] = netip.AddrPort{}
	if d.Upstreams()[0] != netip.MustParseAddrPort("192.168.1.1:53") {
		t.Error("Upstreams shares its slice")
	}
}
