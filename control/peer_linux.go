package control

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

const peerCredentialsSupported = true

// peerOf asks the kernel who connected c (SO_PEERCRED: the credentials
// the peer had when it called connect).
func peerOf(c *net.UnixConn) (Peer, error) {
	cred, err := sockopt(c, "SO_PEERCRED", func(fd int) (*unix.Ucred, error) {
		return unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil {
		return Peer{}, err
	}
	return Peer{PID: int(cred.Pid), UID: cred.Uid, GID: cred.Gid}, nil
}

// peerGroups are the peer's supplementary groups: those of its process
// (/proc/PID/status, as the kernel checks them against the socket's
// mode), when that process still runs as the uid that connected; else
// those the user database gives its uid.
func peerGroups(p Peer) []uint32 {
	if p.PID > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/status"); err == nil {
			if euid, groups, err := parseProcStatus(b); err == nil && euid == p.UID {
				return groups
			}
		}
	}
	return userDBGroups(p.UID)
}

// parseProcStatus reads the effective uid (the second of Uid:) and the
// supplementary groups (Groups:) of a /proc/PID/status file.
func parseProcStatus(b []byte) (euid uint32, groups []uint32, err error) {
	var haveUID, haveGroups bool
	for line := range bytes.Lines(b) {
		key, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(key) {
		case "Uid":
			f := bytes.Fields(value)
			if len(f) < 2 {
				return 0, nil, errors.New("/proc status: Uid: has fewer than two fields")
			}
			n, err := strconv.ParseUint(string(f[1]), 10, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("/proc status: Uid: %w", err)
			}
			euid, haveUID = uint32(n), true
		case "Groups":
			groups = groups[:0]
			for _, g := range bytes.Fields(value) {
				n, err := strconv.ParseUint(string(g), 10, 32)
				if err != nil {
					return 0, nil, fmt.Errorf("/proc status: Groups: %w", err)
				}
				groups = append(groups, uint32(n))
			}
			haveGroups = true
		}
	}
	if !haveUID || !haveGroups {
		return 0, nil, errors.New("/proc status: no Uid: or Groups: line")
	}
	return euid, groups, nil
}
