package platform

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/windows"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// winipcfgHelper is the IP Helper API through winipcfg
// (golang.zx2c4.com/wireguard/windows/tunnel/winipcfg), which wraps
// iphlpapi.dll's calls and MIB structures.
type winipcfgHelper struct{}

func winFamily(v6 bool) winipcfg.AddressFamily {
	if v6 {
		return windows.AF_INET6
	}
	return windows.AF_INET
}

// LUIDByAlias walks the adapters (GetAdaptersAddresses, all of them,
// down ones too: wintun's adapter is down until it is opened) for the
// friendly name, which is the alias.
func (winipcfgHelper) LUIDByAlias(alias string) (uint64, error) {
	as, err := winipcfg.GetAdaptersAddresses(windows.AF_UNSPEC, winipcfg.GAAFlagIncludeAllInterfaces|winipcfg.GAAFlagSkipUnicast|winipcfg.GAAFlagSkipAnycast|winipcfg.GAAFlagSkipMulticast|winipcfg.GAAFlagSkipDNSServer)
	if err != nil {
		return 0, err
	}
	for _, a := range as {
		if a.FriendlyName() == alias {
			return uint64(a.LUID), nil
		}
	}
	return 0, fmt.Errorf("%w: %q", errNoAdapter, alias)
}

func (winipcfgHelper) SetAddresses(luid uint64, v6 bool, addrs []netip.Prefix) error {
	return winipcfg.LUID(luid).SetIPAddressesForFamily(winFamily(v6), addrs)
}

func (winipcfgHelper) SetInterface(luid uint64, v6 bool, metric, mtu uint32) error {
	row, err := winipcfg.LUID(luid).IPInterface(winFamily(v6))
	if err != nil {
		return err
	}
	row.UseAutomaticMetric = false
	row.Metric = metric
	if mtu != 0 {
		row.NLMTU = mtu
	}
	if !v6 {
		// SetIpInterfaceEntry refuses an IPv4 row whose
		// SitePrefixLength is not 0, which GetIpInterfaceEntry can
		// return.
		row.SitePrefixLength = 0
	}
	return row.Set()
}

// onLink is the next hop of a route on the link: the unspecified address.
func onLink(dst netip.Prefix) netip.Addr {
	if dst.Addr().Is6() {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

func (winipcfgHelper) AddRoute(luid uint64, dst netip.Prefix, metric uint32) error {
	err := winipcfg.LUID(luid).AddRoute(dst, onLink(dst), metric)
	if errors.Is(err, windows.ERROR_OBJECT_ALREADY_EXISTS) {
		return nil
	}
	return err
}

func (winipcfgHelper) DeleteRoute(luid uint64, dst netip.Prefix) error {
	err := winipcfg.LUID(luid).DeleteRoute(dst, onLink(dst))
	if errors.Is(err, windows.ERROR_NOT_FOUND) || errors.Is(err, windows.ERROR_FILE_NOT_FOUND) {
		return nil
	}
	return err
}

// DefaultRoutes reads the routes of both families (GetIpForwardTable2),
// and the interfaces' metrics, names and states from the adapters
// (GetAdaptersAddresses).
func (winipcfgHelper) DefaultRoutes() ([]winRoute, error) {
	rows, err := winipcfg.GetIPForwardTable2(windows.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	as, err := winipcfg.GetAdaptersAddresses(windows.AF_UNSPEC, winipcfg.GAAFlagIncludeAllInterfaces|winipcfg.GAAFlagSkipUnicast|winipcfg.GAAFlagSkipAnycast|winipcfg.GAAFlagSkipMulticast|winipcfg.GAAFlagSkipDNSServer)
	if err != nil {
		return nil, fmt.Errorf("the adapters (GetAdaptersAddresses): %w", err)
	}
	byLUID := map[winipcfg.LUID]*winipcfg.IPAdapterAddresses{}
	for _, a := range as {
		byLUID[a.LUID] = a
	}
	var out []winRoute
	for i := range rows {
		r := &rows[i]
		dst := r.DestinationPrefix.Prefix()
		if !dst.IsValid() || dst.Bits() != 0 || r.Loopback {
			continue
		}
		wr := winRoute{LUID: uint64(r.InterfaceLUID), Index: r.InterfaceIndex, Dst: dst, Metric: r.Metric}
		if a := byLUID[r.InterfaceLUID]; a != nil {
			wr.Up = a.OperStatus == winipcfg.IfOperStatusUp && a.IfType != winipcfg.IfTypeSoftwareLoopback
			wr.Alias = a.FriendlyName()
			wr.IfMetric = a.Ipv4Metric
			if dst.Addr().Is6() {
				wr.IfMetric = a.Ipv6Metric
			}
		}
		out = append(out, wr)
	}
	return out, nil
}

// WatchRoutes follows the route changes (a default route added or gone)
// and the interfaces' (a metric, a link state).
func (winipcfgHelper) WatchRoutes(changed func()) (func() error, error) {
	rcb, err := winipcfg.RegisterRouteChangeCallback(func(_ winipcfg.MibNotificationType, r *winipcfg.MibIPforwardRow2) {
		if p := r.DestinationPrefix.Prefix(); p.IsValid() && p.Bits() == 0 {
			changed()
		}
	})
	if err != nil {
		return nil, err
	}
	icb, err := winipcfg.RegisterInterfaceChangeCallback(func(winipcfg.MibNotificationType, *winipcfg.MibIPInterfaceRow) { changed() })
	if err != nil {
		rcb.Unregister()
		return nil, fmt.Errorf("NotifyIpInterfaceChange: %w", err)
	}
	return func() error { return errors.Join(rcb.Unregister(), icb.Unregister()) }, nil
}

var _ winIPHelper = winipcfgHelper{}
