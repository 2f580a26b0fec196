package control

import (
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/windows"
)

const peerCredentialsSupported = true

// sioAFUnixGetPeerPID is SIO_AF_UNIX_GETPEERPID (afunix.h:
// _WSAIOR(IOC_VENDOR, 256)): the process id of an AF_UNIX socket's peer.
const sioAFUnixGetPeerPID = 0x58000100

// peerOf finds the peer's process and lets it in as root when its token
// is SYSTEM's or an elevated administrator's (tokenAdmits); the
// directory's DACL has admitted no other, this checks again.
func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var pid uint32
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		var n uint32
		ierr = windows.WSAIoctl(windows.Handle(fd), sioAFUnixGetPeerPID, nil, 0, (*byte)(unsafe.Pointer(&pid)), uint32(unsafe.Sizeof(pid)), &n, nil, 0)
	}); err != nil {
		return Peer{}, err
	}
	if ierr != nil {
		return Peer{}, fmt.Errorf("reading the peer's process (SIO_AF_UNIX_GETPEERPID): %w", ierr)
	}
	ok, err := processAdmitted(pid)
	if err != nil {
		return Peer{}, fmt.Errorf("reading the token of the peer's process %d: %w", pid, err)
	}
	if !ok {
		return Peer{}, fmt.Errorf("process %d runs neither as SYSTEM nor as an elevated administrator: the control socket serves only those on Windows (run the command from an elevated prompt)", pid)
	}
	return Peer{PID: int(pid)}, nil
}

// processAdmitted reads pid's token: SYSTEM, or the Administrators group
// and its attributes.
func processAdmitted(pid uint32) (bool, error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return false, err
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return false, err
	}
	defer tok.Close()
	user, err := tok.GetTokenUser()
	if err != nil {
		return false, err
	}
	system := user.User.Sid.IsWellKnown(windows.WinLocalSystemSid)
	groups, err := tok.GetTokenGroups()
	if err != nil {
		return false, err
	}
	var attrs uint32
	present := false
	for _, g := range groups.AllGroups() {
		if g.Sid.IsWellKnown(windows.WinBuiltinAdministratorsSid) {
			attrs, present = g.Attributes, true
			break
		}
	}
	return tokenAdmits(system, attrs, present), nil
}

func peerGroups(Peer) []uint32 { return nil }
