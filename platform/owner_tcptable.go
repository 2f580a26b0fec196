package platform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The answer of Windows's GetExtendedTcpTable (iphlpapi) for
// TCP_TABLE_OWNER_PID_ALL, read here without build tags so that it is
// tested everywhere (owner_windows.go asks).
//
// The layouts are tcpmib.h's, as Microsoft documents them:
//
//   - MIB_TCPTABLE_OWNER_PID (AF_INET): dwNumEntries (DWORD) at 0, then
//     that many MIB_TCPROW_OWNER_PID from 4, 24 bytes each: dwState at 0,
//     dwLocalAddr at 4, dwLocalPort at 8, dwRemoteAddr at 12,
//     dwRemotePort at 16, dwOwningPid at 20.
//   - MIB_TCP6TABLE_OWNER_PID (AF_INET6): dwNumEntries at 0, then
//     MIB_TCP6ROW_OWNER_PID from 4, 56 bytes each: ucLocalAddr[16] at 0,
//     dwLocalScopeId at 16, dwLocalPort at 20, ucRemoteAddr[16] at 24,
//     dwRemoteScopeId at 40, dwRemotePort at 44, dwState at 48,
//     dwOwningPid at 52.
//
// Addresses are in network order (their bytes in order). A port is a DWORD
// whose low 16 bits hold it in network order: its first two bytes, in
// order, in the little-endian DWORD; the other two are not read. The other
// DWORDs are in host order, little-endian on every Windows shunt runs on.
// States are MIB_TCP_STATE's: CLOSED 1, LISTEN 2, TIME_WAIT 11,
// DELETE_TCB 12.
const (
	tcpRowSize  = 24
	tcp6RowSize = 56

	mibTCPStateClosed    = 1
	mibTCPStateListen    = 2
	mibTCPStateTimeWait  = 11
	mibTCPStateDeleteTCB = 12
)

// errTCPTable: GetExtendedTcpTable's answer is not of tcpmib.h's layout.
var errTCPTable = errors.New("malformed GetExtendedTcpTable answer")

// findTCPRow finds in table, GetExtendedTcpTable's answer for the family
// of src and dst (IPv6 when v6), the connection whose local end is src and
// remote end dst, both unmapped, and returns its owning process. Listeners,
// TIME_WAIT and closed rows are no process's socket. ok is false when no
// row matches.
func findTCPRow(table []byte, v6 bool, src, dst netip.AddrPort) (pid uint32, ok bool, err error) {
	le, be := binary.LittleEndian, binary.BigEndian
	if len(table) < 4 {
		return 0, false, fmt.Errorf("%w: %d bytes", errTCPTable, len(table))
	}
	rowSize := tcpRowSize
	if v6 {
		rowSize = tcp6RowSize
	}
	n := uint64(le.Uint32(table))
	if n > uint64(len(table)-4)/uint64(rowSize) {
		return 0, false, fmt.Errorf("%w: %d rows of %d bytes do not fit in %d bytes", errTCPTable, n, rowSize, len(table))
	}
	for i := range int(n) {
		row := table[4+i*rowSize : 4+(i+1)*rowSize]
		var local, remote netip.AddrPort
		var state uint32
		if v6 {
			local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(row[0:])).Unmap(), be.Uint16(row[20:]))
			remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(row[24:])).Unmap(), be.Uint16(row[44:]))
			state, pid = le.Uint32(row[48:]), le.Uint32(row[52:])
		} else {
			local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(row[4:])), be.Uint16(row[8:]))
			remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(row[12:])), be.Uint16(row[16:]))
			state, pid = le.Uint32(row[0:]), le.Uint32(row[20:])
		}
		if local != src || remote != dst {
			continue
		}
		switch state {
		case mibTCPStateClosed, mibTCPStateListen, mibTCPStateTimeWait, mibTCPStateDeleteTCB:
			continue
		}
		return pid, true, nil
	}
	return 0, false, nil
}
