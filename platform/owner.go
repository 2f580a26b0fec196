package platform

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// Owner is the local process behind a flow.
type Owner struct {
	UID uint32
	// NoUID means the system has no numeric user ids (Windows): UID is 0
	// and says nothing, and User names the user instead. Rules and
	// allowed_users that name uids never match such an owner.
	NoUID bool
	// User is the user as the system names it where that is no uid: the
	// SID on Windows ("S-1-5-21-…-1001"). Empty elsewhere.
	User string
	PID  int    // 0 if unknown (socket found but process not, e.g. it exited)
	Exe  string // absolute path of the executable, "" if unknown
	Name string // executable base name (comm, or base of Exe)
}

// String is for logs: "curl[1234] uid 1000", or "uid 1000" when the
// process is unknown; the User in place of the uid where there is none.
func (o Owner) String() string {
	who := fmt.Sprintf("uid %d", o.UID)
	if o.NoUID {
		who = "user " + o.User
	}
	if o.PID == 0 {
		return who
	}
	return fmt.Sprintf("%s[%d] %s", o.Name, o.PID, who)
}

// Owners finds the process and user behind the local end of a TCP flow.
//
// src is the local socket's address and port, as the flow arrives at the
// TUN (169.254.83.1 or fd53:6875:6e74::1 for captured flows), dst the
// destination. IPv4-mapped IPv6 addresses are taken as IPv4, zones are
// dropped. A flow whose socket is not found (it came from another host,
// or is gone) fails with an error wrapping ErrNoSocket. The lookups honour
// ctx, the flow's: once it ends they stop between steps (a scan of
// processes among them) and return its error, wrapped. Lookups are safe
// for concurrent use; Close must come after the last.
type Owners interface {
	Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error)
	// LookupUID finds the user alone (cheaper where the OS allows:
	// Linux one sock_diag request, no /proc). Where the system has no
	// numeric user ids (Owner.NoUID), it fails with ErrNoUID.
	LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error)
	// Close lets go of what the lookup holds (a netlink socket and
	// /proc on Linux).
	Close() error
}

// ErrNoSocket is returned, wrapped with the flow, when no local socket has
// the flow's addresses: it came from another host, or its socket is gone.
var ErrNoSocket = errors.New("no local socket")

// ErrNoUID is returned by LookupUID where users have no numeric ids
// (Windows: SIDs). Rules that name users by uid cannot match there.
var ErrNoUID = errors.New("this system has no numeric user ids (users: and allowed_users cannot name its users)")

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

// ownerCtxErr is ctx's error, once it has ended, as the lookup of the
// flow src -> dst returns it.
func ownerCtxErr(ctx context.Context, src, dst netip.AddrPort) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("owner of %v -> %v: %w", src, dst, err)
	}
	return nil
}

// evict deletes n entries, whichever map iteration yields first.
func evict[K comparable, V any](m map[K]V, n int) {
	for k := range m {
		if n == 0 {
			return
		}
		delete(m, k)
		n--
	}
}
