package control

import (
	"fmt"
	"os/user"
	"slices"
	"strconv"
)

// Peer is the process at the other end of a control connection, as the
// kernel saw it when it connected.
type Peer struct {
	PID int    // 0 when the system does not tell
	UID uint32 // effective
	GID uint32 // effective (primary)
	// Groups are the supplementary groups, when known; see access.allow.
	Groups []uint32
}

func (p Peer) String() string {
	s := fmt.Sprintf("uid %d, gid %d", p.UID, p.GID)
	if p.PID > 0 {
		s += fmt.Sprintf(", pid %d", p.PID)
	}
	return s
}

// access is who may use the socket: root, the daemon's own user, and the
// members of a group.
type access struct {
	self uint32 // the daemon's effective uid
	// group is control.group as configured ("" for none), gid its id.
	group string
	gid   uint32
}

// allow tells whether p may use the socket: nil if so, else why not, in a
// sentence for the log and the 403. groups gives p's supplementary groups;
// it is called only when the answer depends on them.
func (a access) allow(p Peer, groups func(Peer) []uint32) error {
	if p.UID == 0 || p.UID == a.self {
		return nil
	}
	if a.group != "" && (p.GID == a.gid || slices.Contains(groups(p), a.gid)) {
		return nil
	}
	return fmt.Errorf("%s may not use the control socket: it serves %s", p, a.serves())
}

// serves says who may use the socket.
func (a access) serves() string {
	s := "root"
	if a.self != 0 {
		s += fmt.Sprintf(", shunt's own user (uid %d)", a.self)
	}
	if a.group == "" {
		return s + " (control.group is not set)"
	}
	name := "group " + a.group
	if a.group != strconv.FormatUint(uint64(a.gid), 10) {
		name += fmt.Sprintf(" (gid %d)", a.gid)
	}
	return s + " and members of " + name + " (control.group)"
}

// lookupGroup finds control.group's gid: a group name, or a number (a gid
// with no name is fine, as for chown).
func lookupGroup(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("control.group %q: %v: create the group (groupadd %s), or name one that exists", name, err, name)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("control.group %q: gid %q is not a number", name, g.Gid)
	}
	return uint32(gid), nil
}

// userDBGroups are the groups the user database gives uid: what it would
// get at login.
func userDBGroups(uid uint32) []uint32 {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil
	}
	var gids []uint32
	for _, id := range ids {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil {
			gids = append(gids, uint32(n))
		}
	}
	return gids
}
