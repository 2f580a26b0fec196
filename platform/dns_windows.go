package platform

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// NewOSDNS is the NRPT manager (dns_nrpt.go) in mode auto, or one that
// changes nothing in mode off. Either way the upstreams are the DNS
// servers of the adapters that are up, the primary one's first.
func NewOSDNS(opts DNSOptions) (OSDNS, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	up, err := windowsResolvers()
	if err != nil {
		opts.Log.WithError(err).Warn("NRPT: the adapters' DNS servers (GetAdaptersAddresses) are unknown: shunt's DNS server forwards nothing, and host names of rules resolve only through shunt's own answers")
	}
	switch opts.Mode {
	case DNSModeOff:
		return &offDNS{up: up}, nil
	case DNSModeAuto, DNSModeNRPT:
		return &nrptDNS{reg: newWinRegistry(), log: opts.Log, up: up}, nil
	}
	return nil, fmt.Errorf("dns.mode %s is not Windows': on Windows set dns.mode to auto or nrpt (NRPT rules), or off", opts.Mode)
}

// CleanUpDNS removes the NRPT rules a crashed shunt left.
func CleanUpDNS(opts DNSOptions) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	return cleanUpNRPT(newWinRegistry(), opts.Log)
}

// windowsResolvers are the DNS servers of the adapters that are up, by
// their IPv4 interface metric (the primary first).
func windowsResolvers() ([]netip.AddrPort, error) {
	as, err := winipcfg.GetAdaptersAddresses(windows.AF_UNSPEC, winipcfg.GAAFlagSkipUnicast|winipcfg.GAAFlagSkipAnycast|winipcfg.GAAFlagSkipMulticast)
	if err != nil {
		return nil, err
	}
	as = slices.DeleteFunc(as, func(a *winipcfg.IPAdapterAddresses) bool {
		return a.OperStatus != winipcfg.IfOperStatusUp || a.IfType == winipcfg.IfTypeSoftwareLoopback
	})
	slices.SortStableFunc(as, func(a, b *winipcfg.IPAdapterAddresses) int { return cmp.Compare(a.Ipv4Metric, b.Ipv4Metric) })
	var servers []netip.Addr
	for _, a := range as {
		for s := a.FirstDNSServerAddress; s != nil; s = s.Next {
			if addr, ok := netip.AddrFromSlice(s.Address.IP()); ok {
				servers = append(servers, addr)
			}
		}
	}
	return nrptUpstreams(servers), nil
}

// winRegistry is HKEY_LOCAL_MACHINE (golang.org/x/sys/windows/registry),
// and the two calls x/sys/windows does not wrap, loaded from System32
// only, when first called.
type winRegistry struct {
	refreshPolicyEx       *windows.LazyProc // userenv.dll
	dnsFlushResolverCache *windows.LazyProc // dnsapi.dll
}

func newWinRegistry() *winRegistry {
	return &winRegistry{
		refreshPolicyEx:       windows.NewLazySystemDLL("userenv.dll").NewProc("RefreshPolicyEx"),
		dnsFlushResolverCache: windows.NewLazySystemDLL("dnsapi.dll").NewProc("DnsFlushResolverCache"),
	}
}

func (*winRegistry) SubKeys(path string) ([]string, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, path, registry.ENUMERATE_SUB_KEYS)
	if errors.Is(err, registry.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer k.Close()
	return k.ReadSubKeyNames(-1)
}

func (*winRegistry) WriteKey(path string, values []regValue) error {
	k, _, err := registry.CreateKey(registry.LOCAL_MACHINE, path, registry.SET_VALUE)
	if err != nil {
		return err
	}
	defer k.Close()
	for _, v := range values {
		switch v.Kind {
		case regSZ:
			err = k.SetStringValue(v.Name, v.Str)
		case regMultiSZ:
			err = k.SetStringsValue(v.Name, v.Strs)
		case regDWord:
			err = k.SetDWordValue(v.Name, v.DWord)
		}
		if err != nil {
			return fmt.Errorf("value %s: %w", v.Name, err)
		}
	}
	return nil
}

func (*winRegistry) DeleteKey(path string) error {
	err := registry.DeleteKey(registry.LOCAL_MACHINE, path)
	if errors.Is(err, registry.ErrNotExist) {
		return nil
	}
	return err
}

// rpForce is RefreshPolicyEx's RP_FORCE: apply every policy, changed or not.
const rpForce = 1

// RefreshPolicy refreshes the computer's policy (RefreshPolicyEx(TRUE,
// RP_FORCE)).
func (r *winRegistry) RefreshPolicy() error {
	if err := r.refreshPolicyEx.Find(); err != nil {
		return err
	}
	if ok, _, err := r.refreshPolicyEx.Call(1, rpForce); ok == 0 {
		return err
	}
	return nil
}

// FlushCache empties the DNS client's cache, as ipconfig /flushdns does
// (DnsFlushResolverCache, which dnsapi.dll exports undocumented).
func (r *winRegistry) FlushCache() error {
	if err := r.dnsFlushResolverCache.Find(); err != nil {
		return err
	}
	if ok, _, err := r.dnsFlushResolverCache.Call(); ok == 0 {
		return err
	}
	return nil
}

var _ nrptRegistry = (*winRegistry)(nil)
