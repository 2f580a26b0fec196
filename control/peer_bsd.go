//go:build darwin || freebsd

package control

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

const peerCredentialsSupported = true

// peerOf asks the kernel who connected c (LOCAL_PEERCRED: the effective
// uid and groups the peer had when it called connect; the first group is
// the effective gid). The kernel lists at most 16 groups.
func peerOf(c *net.UnixConn) (Peer, error) {
	cred, err := sockopt(c, "LOCAL_PEERCRED", func(fd int) (*unix.Xucred, error) {
		return unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	})
	if err != nil {
		return Peer{}, err
	}
	n := min(max(int(cred.Ngroups), 0), len(cred.Groups))
	if n == 0 {
		return Peer{}, fmt.Errorf("reading the peer's credentials (LOCAL_PEERCRED): no groups")
	}
	return Peer{UID: cred.Uid, GID: cred.Groups[0], Groups: append([]uint32(nil), cred.Groups[1:n]...)}, nil
}

// peerGroups are the groups the kernel gave with the credentials.
func peerGroups(p Peer) []uint32 { return p.Groups }
