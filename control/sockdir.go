package control

import (
	"fmt"
	"strings"
)

// Windows' control socket: a socket file has no mode there, and Windows
// checks a connect against the security descriptors on its way. shunt
// gives the socket's directory a protected DACL (SYSTEM and Administrators,
// full control, inherited by what is made in it; nothing from the parent),
// and the Administrators for its owner, before the socket is made: nobody
// else reaches the socket. The peer is checked again at each connection
// (the peer's process, by SIO_AF_UNIX_GETPEERPID, must run as SYSTEM or
// with the Administrators group enabled: an elevated administrator), and
// then stands as root does elsewhere.
//
// The decisions are here, without build tag, so that Linux tests them;
// sock_windows.go and peer_windows.go make the calls.

// socketDirSDDL is the directory's security descriptor: owner
// Administrators; DACL protected (P), allowing full access (FA) to SYSTEM
// (SY) and the Administrators (BA), inherited by files and directories
// (OICI).
const socketDirSDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// checkSocketDir refuses a directory that holds anything but the socket
// (names are its entries): its DACL becomes shunt's, and another
// program's files there would be cut off.
func checkSocketDir(dir, socket string, names []string) error {
	var others []string
	for _, n := range names {
		if !strings.EqualFold(n, socket) {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return nil
	}
	if len(others) > 3 {
		others = append(others[:3], "...")
	}
	return fmt.Errorf("control socket: its directory %s holds other files (%s): on Windows shunt restricts the socket's directory to SYSTEM and Administrators, so it must be the socket's alone: set control.socket to a path in a new directory (such as C:\\ProgramData\\shunt\\run\\shunt.sock)", dir, strings.Join(others, ", "))
}

// Token group attributes (winnt.h).
const (
	seGroupEnabled        = 0x4
	seGroupUseForDenyOnly = 0x10
)

// tokenAdmits decides whether a peer's token may use the socket: SYSTEM's,
// or one whose Administrators group is enabled (an elevated
// administrator; under UAC a filtered token has it for deny only).
// adminAttrs are the attributes of the Administrators group in the token,
// present tells whether it is there at all.
func tokenAdmits(system bool, adminAttrs uint32, present bool) bool {
	if system {
		return true
	}
	return present && adminAttrs&seGroupEnabled != 0 && adminAttrs&seGroupUseForDenyOnly == 0
}
