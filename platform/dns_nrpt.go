package platform

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"

	shunterrs "github.com/shunt-dev/shunt/internal/errs"
)

// Windows split DNS through the Name Resolution Policy Table (NRPT): rules
// in the registry that send the names under some domains to other servers
// than the interfaces' (MS-GPNRPT, section 2.2). This file decides which
// rules for a DNSConfig, without build tag, so that its tests run on Linux
// with a fake registry; dns_windows.go has the real one.
//
// One rule is a key under DnsPolicyConfig, with the values
//
//	Version           REG_DWORD    1 (the specification's only version)
//	Name              REG_MULTI_SZ the names it covers: ".corp.example" for
//	                               the names under corp.example, "corp.example"
//	                               for the name itself, "." for every name
//	GenericDNSServers REG_SZ       the servers, separated by ";"
//	ConfigOptions     REG_DWORD    0x8: only the generic DNS servers option
//
// and at most 50 names (a limit Tailscale found; beyond it rules are
// ignored), so many domains make several rules. The DNS client service
// watches the local key (under SYSTEM\...\Dnscache\Parameters) and applies
// a change itself; but where group policy has NRPT rules of its own (the
// key under SOFTWARE\Policies), the local ones are ignored, so shunt writes
// its rules there too and asks group policy to refresh (RefreshPolicyEx),
// as Tailscale does. Then it flushes the DNS client's cache, so that no
// answer cached from before the change outlives it.
//
// shunt's rules are recognisable by their keys' names: GUIDs that start
// with "Shunt" in hex, so that CleanUpDNS (after a crash) removes them and
// nobody else's.

// DNSModeNRPT is the manager of Windows (NRPT rules); dns.mode auto
// chooses it there.
const DNSModeNRPT = "nrpt"

// The NRPT's keys, under HKEY_LOCAL_MACHINE.
const (
	nrptLocalBase = `SYSTEM\CurrentControlSet\Services\Dnscache\Parameters\DnsPolicyConfig`
	nrptGPBase    = `SOFTWARE\Policies\Microsoft\Windows NT\DNSClient\DnsPolicyConfig`
	// nrptKeyPrefix starts the name of each of shunt's rules; the rule's
	// number ends it.
	nrptKeyPrefix = "{5368756e-7400-4000-8000-"
	// nrptMaxNames is how many names one rule holds at most.
	nrptMaxNames = 50
	// nrptGenericServers is ConfigOptions' flag of GenericDNSServers.
	nrptGenericServers = 0x8
	nrptVersion        = 1
)

// regKind is a registry value's type.
type regKind int

const (
	regSZ regKind = iota
	regMultiSZ
	regDWord
)

// regValue is one value of a registry key.
type regValue struct {
	Name  string
	Kind  regKind
	Str   string   // REG_SZ
	Strs  []string // REG_MULTI_SZ
	DWord uint32   // REG_DWORD
}

func (v regValue) String() string {
	switch v.Kind {
	case regMultiSZ:
		q := make([]string, len(v.Strs))
		for i, s := range v.Strs {
			q[i] = strconv.Quote(s)
		}
		return v.Name + " REG_MULTI_SZ " + strings.Join(q, " ")
	case regDWord:
		return fmt.Sprintf("%s REG_DWORD %#x", v.Name, v.DWord)
	}
	return v.Name + " REG_SZ " + strconv.Quote(v.Str)
}

// nrptRegistry is what the NRPT manager needs of Windows: the registry
// under HKEY_LOCAL_MACHINE, group policy's refresh and the DNS client's
// cache.
type nrptRegistry interface {
	// SubKeys are the names of the keys right under path; a path that
	// does not exist has none (and no error).
	SubKeys(path string) ([]string, error)
	// WriteKey creates the key path (and those above it) if need be, and
	// sets values; its other values stay.
	WriteKey(path string, values []regValue) error
	// DeleteKey removes the key path, which has no subkeys; one that does
	// not exist is no error.
	DeleteKey(path string) error
	// RefreshPolicy has group policy apply the computer's policy keys
	// again (userenv.dll's RefreshPolicyEx, forced).
	RefreshPolicy() error
	// FlushCache empties the DNS client's cache (dnsapi.dll's
	// DnsFlushResolverCache).
	FlushCache() error
}

// nrptRule is one rule: its key's name and values.
type nrptRule struct {
	Key    string
	Values []regValue
}

func nrptKeyName(i int) string { return fmt.Sprintf("%s%012x}", nrptKeyPrefix, i) }

// isShuntNRPTKey tells shunt's rules from others (key names are not case
// sensitive).
func isShuntNRPTKey(name string) bool {
	return strings.HasPrefix(strings.ToLower(name), nrptKeyPrefix)
}

// nrptRules are the rules that send cfg's names to cfg's servers: every
// name without domains, else each domain and the names under it.
func nrptRules(cfg DNSConfig) ([]nrptRule, error) {
	if err := checkDNSConfig(cfg); err != nil {
		return nil, err
	}
	var servers []string
	for _, a := range sortedNameservers(cfg.Nameservers) {
		servers = append(servers, a.String())
	}
	names := []string{"."}
	if len(cfg.Domains) > 0 {
		names = nil
		seen := map[string]bool{}
		for _, d := range cfg.Domains {
			c, _ := canonicalDomain(d) // checked above
			if !seen[c] {
				seen[c] = true
				names = append(names, "."+c, c)
			}
		}
	}
	var rules []nrptRule
	for chunk := range slices.Chunk(names, nrptMaxNames) {
		rules = append(rules, nrptRule{Key: nrptKeyName(len(rules)), Values: []regValue{
			{Name: "Version", Kind: regDWord, DWord: nrptVersion},
			{Name: "Name", Kind: regMultiSZ, Strs: chunk},
			{Name: "GenericDNSServers", Kind: regSZ, Str: strings.Join(servers, ";")},
			{Name: "ConfigOptions", Kind: regDWord, DWord: nrptGenericServers},
		}})
	}
	return rules, nil
}

// nrptDNS is Windows' OSDNS: shunt's NRPT rules.
type nrptDNS struct {
	reg nrptRegistry
	log logrus.FieldLogger
	up  []netip.AddrPort

	mu sync.Mutex
}

// Set writes the rules for cfg, then removes shunt's rules it no longer
// needs (fewer domains, or group policy's NRPT gone).
func (d *nrptDNS) Set(cfg DNSConfig) error {
	rules, err := nrptRules(cfg)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	gpKeys, err := d.reg.SubKeys(nrptGPBase)
	if err != nil {
		return fmt.Errorf("NRPT: reading group policy's rules (HKLM\\%s): %w", nrptGPBase, err)
	}
	// Group policy's NRPT, when it has rules, hides the local one.
	asGP := slices.ContainsFunc(gpKeys, func(k string) bool { return !isShuntNRPTKey(k) })
	bases := []string{nrptLocalBase}
	if asGP {
		bases = append(bases, nrptGPBase)
	}
	keep := map[string]bool{}
	for _, base := range bases {
		for _, r := range rules {
			path := base + `\` + r.Key
			if err := d.reg.WriteKey(path, r.Values); err != nil {
				return fmt.Errorf("NRPT: writing rule HKLM\\%s: %w (shunt must run as an administrator, or as the service)", path, err)
			}
			keep[path] = true
		}
	}
	gpChanged, err := removeShuntNRPT(d.reg, keep)
	if err != nil {
		return err
	}
	return applyNRPT(d.reg, d.log, asGP || gpChanged)
}

// removeShuntNRPT removes shunt's rules but those in keep, in both bases;
// gp: some were group policy's. Group policy's key, once shunt's rules
// were the last in it, goes too: while it exists, even empty, the local
// rules count for nothing.
func removeShuntNRPT(reg nrptRegistry, keep map[string]bool) (gp bool, err error) {
	var errs []error
	for _, base := range []string{nrptLocalBase, nrptGPBase} {
		keys, err := reg.SubKeys(base)
		if err != nil {
			errs = append(errs, fmt.Errorf("NRPT: listing the rules of HKLM\\%s: %w", base, err))
			continue
		}
		slices.Sort(keys)
		for _, k := range keys {
			path := base + `\` + k
			if !isShuntNRPTKey(k) || keep[path] {
				continue
			}
			if err := reg.DeleteKey(path); err != nil {
				errs = append(errs, fmt.Errorf("NRPT: removing rule HKLM\\%s: %w", path, err))
				continue
			}
			gp = gp || base == nrptGPBase
		}
	}
	if gp {
		if left, err := reg.SubKeys(nrptGPBase); err == nil && len(left) == 0 {
			if err := reg.DeleteKey(nrptGPBase); err != nil {
				errs = append(errs, fmt.Errorf("NRPT: removing group policy's empty HKLM\\%s: %w", nrptGPBase, err))
			}
		}
	}
	return gp, shunterrs.Join(errs...)
}

// applyNRPT makes a change count: group policy refreshed when its keys
// changed, the DNS client's cache flushed (best effort: a stale answer
// expires by itself).
func applyNRPT(reg nrptRegistry, log logrus.FieldLogger, gp bool) error {
	if gp {
		if err := reg.RefreshPolicy(); err != nil {
			return fmt.Errorf("NRPT: group policy has NRPT rules, so shunt's are written there too, but refreshing group policy (RefreshPolicyEx) failed: %w; run gpupdate /target:computer /force", err)
		}
	}
	if err := reg.FlushCache(); err != nil {
		log.WithError(err).Warn("NRPT: flushing the DNS client's cache (DnsFlushResolverCache) failed: names looked up before the change may resolve as before until their answers expire (ipconfig /flushdns clears them)")
	}
	return nil
}

func (d *nrptDNS) Upstreams() []netip.AddrPort { return slices.Clone(d.up) }

func (*nrptDNS) Mode() string { return DNSModeNRPT }

// Close removes shunt's rules. It may be called more than once.
func (d *nrptDNS) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	gp, err := removeShuntNRPT(d.reg, nil)
	if aerr := applyNRPT(d.reg, d.log, gp); err == nil {
		err = aerr
	}
	return err
}

// cleanUpNRPT removes the rules a shunt that did not stop cleanly left,
// and says how many.
func cleanUpNRPT(reg nrptRegistry, log logrus.FieldLogger) error {
	n := 0
	counting := countingRegistry{reg, &n}
	gp, err := removeShuntNRPT(counting, nil)
	if n > 0 {
		log.WithField("removed", n).Warn("NRPT: removed split DNS rules left behind by an earlier run that did not stop cleanly")
		if aerr := applyNRPT(reg, log, gp); err == nil {
			err = aerr
		}
	}
	return err
}

// countingRegistry counts the keys deleted.
type countingRegistry struct {
	nrptRegistry
	n *int
}

func (c countingRegistry) DeleteKey(path string) error {
	err := c.nrptRegistry.DeleteKey(path)
	if err == nil {
		*c.n++
	}
	return err
}

// nrptUpstreams are the system's resolvers as shunt forwards to them: at
// port 53, without duplicates, without shunt's own addresses and without
// Windows' placeholders for "no IPv6 DNS server" (fec0:0:0:ffff::1 to 3,
// the deprecated site-local well-known servers).
func nrptUpstreams(servers []netip.Addr) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range servers {
		a = a.Unmap()
		if !a.IsValid() || a.IsUnspecified() || isOwnAddr(a) || isSiteLocalPlaceholder(a) {
			continue
		}
		ap := netip.AddrPortFrom(a, 53)
		if !slices.Contains(out, ap) {
			out = append(out, ap)
		}
	}
	return out
}

func isSiteLocalPlaceholder(a netip.Addr) bool {
	p := netip.MustParsePrefix("fec0:0:0:ffff::/64")
	if !p.Contains(a.WithZone("")) {
		return false
	}
	b := a.As16()
	return slices.Equal(b[8:15], make([]byte, 7)) && b[15] >= 1 && b[15] <= 3
}

var _ OSDNS = (*nrptDNS)(nil)
