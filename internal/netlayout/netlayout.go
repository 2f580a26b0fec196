// Package netlayout is the one place that says which addresses shunt gives
// itself: the TUN device's own addresses, the address of its DNS server on
// the TUN side, and the default fake-IP ranges its DNS server answers
// from. They are chosen together so that none overlaps another.
//
//   - shunt's own addresses come from 169.254.83.0/24 (IPv4 link-local:
//     never forwarded by a router, so nothing beyond this host ever sees
//     them; 83 is "S") and fd53:6875:6e74::/64 (unique-local, "Shunt");
//   - the fake IPs are 198.18.0.0/15 (RFC 2544's benchmarking range, which
//     no real network uses, as sing-box and Clash use it) and
//     fd53:6875:6e74:fa6e::/64, a /64 of the same unique-local /48 that
//     holds none of shunt's own addresses.
package netlayout

import "net/netip"

// DeviceName is the TUN device's name on the OS goos when tun.name names
// none, for config (which fills the default) and tun (whose Open takes
// an empty name so): Linux shunt0; macOS utun, whose number the kernel
// picks; Windows shunt, the adapter's name in the Network Connections
// list.
func DeviceName(goos string) string {
	switch goos {
	case "darwin", "ios":
		return "utun"
	case "windows":
		return "shunt"
	default:
		return "shunt0"
	}
}

var (
	// TUN4 and TUN6 are the TUN device's addresses, the source of the
	// connections the kernel routes into it. Single addresses: they add
	// no connected route.
	TUN4 = netip.MustParseAddr("169.254.83.1")
	TUN6 = netip.MustParseAddr("fd53:6875:6e74::1")
	// DNS4 and DNS6 are where shunt's DNS server answers, on the TUN side:
	// routed into the TUN, and never assigned to the device (a local
	// address would be answered by the kernel's loopback, not by shunt).
	DNS4 = netip.MustParseAddr("169.254.83.53")
	DNS6 = netip.MustParseAddr("fd53:6875:6e74::53")
	// Own4 and Own6 hold every address above; fake-IP ranges must not
	// overlap them.
	Own4 = netip.MustParsePrefix("169.254.83.0/24")
	Own6 = netip.MustParsePrefix("fd53:6875:6e74::/64")
	// Fake4 and Fake6 are the default fake-IP ranges.
	Fake4 = netip.MustParsePrefix("198.18.0.0/15")
	Fake6 = netip.MustParsePrefix("fd53:6875:6e74:fa6e::/64")
)

// TUNAddrs are the TUN device's addresses, as single-address prefixes.
func TUNAddrs() []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(TUN4, 32), netip.PrefixFrom(TUN6, 128)}
}

// DNSAddrs are the addresses of shunt's DNS server.
func DNSAddrs() []netip.Addr { return []netip.Addr{DNS4, DNS6} }

// Own are the prefixes that hold shunt's own addresses.
func Own() []netip.Prefix { return []netip.Prefix{Own4, Own6} }

// DefaultFakeRanges are the fake-IP ranges when the configuration names
// none.
func DefaultFakeRanges() []netip.Prefix { return []netip.Prefix{Fake4, Fake6} }
