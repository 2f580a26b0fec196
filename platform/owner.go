package platform

import (
	"errors"
	"fmt"
	"net/netip"
)

// Owner is the local process behind a flow.
type Owner struct {
	UID  uint32
	PID  int    // 0 if unknown (socket found but process not, e.g. it exited)
	Exe  string // absolute path of the executable (/proc/PID/exe), "" if unknown
	Name string // executable base name (comm or base of Exe)
}

// String is for logs: "curl[1234] uid 1000", or "uid 1000" when the
// process is unknown.
func (o Owner) String() string {
	if o.PID == 0 {
		return fmt.Sprintf("uid %d", o.UID)
	}
	return fmt.Sprintf("%s[%d] uid %d", o.Name, o.PID, o.UID)
}

// OwnerLookup finds the owner of the local end of a TCP flow.
//
// src is the local socket's address and port, as the flow arrives at the
// TUN (169.254.83.1 or fd53:6875:6e74::1 for captured flows), dst the
// destination. IPv4-mapped IPv6 addresses are taken as IPv4. Lookup is
// safe for concurrent use.
type OwnerLookup interface {
	Lookup(src, dst netip.AddrPort) (Owner, error)
}

// UIDLookup is implemented by owner lookups that can find a flow's user
// alone, more cheaply than its process (Linux: one sock_diag request, no
// /proc).
type UIDLookup interface {
	LookupUID(src, dst netip.AddrPort) (uint32, error)
}

// ErrNoSocket is returned, wrapped with the flow, when no local socket has
// the flow's addresses: it came from another host, or its socket is gone.
var ErrNoSocket = errors.New("no local socket")

func errNoSocket(src, dst netip.AddrPort) error {
	return fmt.Errorf("%w for %v -> %v", ErrNoSocket, src, dst)
}

// flowTuple unmaps IPv4-mapped addresses, drops IPv6 zones and checks
// that both ends are of one family.
func flowTuple(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort, error) {
	src = netip.AddrPortFrom(src.Addr().Unmap().WithZone(""), src.Port())
	dst = netip.AddrPortFrom(dst.Addr().Unmap().WithZone(""), dst.Port())
	if !src.Addr().IsValid() || !dst.Addr().IsValid() || src.Addr().Is4() != dst.Addr().Is4() {
		return src, dst, fmt.Errorf("owner of %v -> %v: not a TCP flow of one address family", src, dst)
	}
	return src, dst, nil
}
