package platform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// The answer of macOS's sysctl net.inet.tcp.pcblist_n, read here without
// build tags so that it is tested everywhere (owner_darwin.go asks).
//
// The layouts are xnu's (bsd/netinet/in_pcb.h, bsd/sys/socketvar.h,
// bsd/netinet/tcp_var.h, all under #pragma pack(4)), as the kernel writes
// them (get_pcblist_n in bsd/netinet/in_pcblist.c) and netstat reads them
// (protopr in network_cmds' netstat.tproj/inet.c):
//
//   - struct xinpgen first: xig_len (u32) at 0, xig_count at 4, xig_gen
//     (u64) at 8, xig_sogen at 16; 24 bytes. Another closes the list.
//   - then per PCB one record of each kind, each starting with xgn_len and
//     xgn_kind (u32 each) and each rounded up to 8 bytes: xinpcb_n
//     (XSO_INPCB), xsocket_n (XSO_SOCKET), two xsockbuf_n (XSO_RCVBUF,
//     XSO_SNDBUF), xsockstat_n (XSO_STATS), xtcpcb_n (XSO_TCPCB). The
//     kernel writes them in that order; they are grouped here by kind (a
//     group ends where a kind it holds comes again), as netstat does, so
//     the order does not matter.
//   - struct xinpcb_n: inp_fport at 16, inp_lport at 18 (network order),
//     inp_gencnt (u64) at 28, inp_vflag (u8) at 44 (INP_IPV4 0x1, INP_IPV6
//     0x2), the foreign address at 48 and the local at 64, 16 bytes each:
//     an in6_addr, or for IPv4 an in_addr_4in6 (three u32 of padding, then
//     the address, at 60 and 76).
//   - struct xsocket_n: xso_protocol (i32) at 36, so_uid at 64,
//     so_last_pid at 68, so_e_pid at 72.
//   - struct xtcpcb_n: t_segq (u64) at 8, t_dupacks at 16, t_timer[4]
//     (TCPT_NTIMERS_EXT, bsd/netinet/tcp_timer.h) at 20, t_state (i32) at
//     36; the states are bsd/netinet/tcp_fsm.h's (TCPS_CLOSED 0,
//     TCPS_LISTEN 1, TCPS_TIME_WAIT 10).
//
// Host byte order is little-endian on every Mac (amd64, arm64).
const (
	sizeofXinpgen = 24

	xsoSocket = 0x001
	xsoInpcb  = 0x010
	xsoTcpcb  = 0x020

	inpIPv4 = 0x1
	inpIPv6 = 0x2

	xinpFport   = 16
	xinpLport   = 18
	xinpGencnt  = 28
	xinpVflag   = 44
	xinpFaddr   = 48
	xinpLaddr   = 64
	xinpMinSize = xinpLaddr + 16

	xsoProtocol = 36
	xsoUID      = 64
	xsoLastPID  = 68
	xsoEPID     = 72
	xsoMinSize  = xsoEPID + 4

	xtState   = 36
	xtMinSize = xtState + 4

	tcpsClosed   = 0
	tcpsListen   = 1
	tcpsTimeWait = 10

	ipprotoTCP = 6
)

// pcbSocket is what the owner lookup needs of one socket of the list.
type pcbSocket struct {
	uid uint32
	// pid is the socket's effective owner (so_e_pid: the application a
	// daemon opened it for, when it was delegated), else its last user
	// (so_last_pid); 0 if neither is known.
	pid int
}

// errPCBList: the sysctl's answer is not the list of xnu's layout.
var errPCBList = errors.New("malformed net.inet.tcp.pcblist_n answer")

// findPCB finds in list (net.inet.tcp.pcblist_n's answer) the TCP socket
// whose local end is src and foreign end dst, both unmapped and of one
// family. Listeners, TIME_WAIT and closed PCBs are no process's socket, and
// PCBs freed while the kernel copied the list out are skipped. ok is false
// when no socket matches.
func findPCB(list []byte, src, dst netip.AddrPort) (s pcbSocket, ok bool, err error) {
	ne := binary.NativeEndian
	if len(list) < sizeofXinpgen {
		return s, false, fmt.Errorf("%w: %d bytes, shorter than its header", errPCBList, len(list))
	}
	head := int(ne.Uint32(list))
	if head < sizeofXinpgen || head > len(list) {
		return s, false, fmt.Errorf("%w: header of %d bytes", errPCBList, head)
	}
	gen := ne.Uint64(list[8:])

	var g pcbGroup
	for off := roundUp8(head); off+8 <= len(list); {
		n, kind := int(ne.Uint32(list[off:])), ne.Uint32(list[off+4:])
		if n <= sizeofXinpgen { // the closing xinpgen
			break
		}
		if n > len(list)-off {
			return s, false, fmt.Errorf("%w: a record of %d bytes at %d overruns the %d bytes", errPCBList, n, off, len(list))
		}
		if kind != 0 && g.kinds&kind != 0 {
			if s, ok = g.match(gen, src, dst); ok {
				return s, true, nil
			}
			g = pcbGroup{}
		}
		g.add(kind, list[off:off+n])
		off += roundUp8(n)
	}
	s, ok = g.match(gen, src, dst)
	return s, ok, nil
}

// pcbGroup is one PCB's records.
type pcbGroup struct {
	kinds        uint32
	inp, so, tcp []byte
}

func (g *pcbGroup) add(kind uint32, rec []byte) {
	g.kinds |= kind
	switch kind {
	case xsoInpcb:
		g.inp = rec
	case xsoSocket:
		g.so = rec
	case xsoTcpcb:
		g.tcp = rec
	}
}

// match reports whether the group is a process's TCP socket from src to
// dst, in the list of generation gen.
func (g *pcbGroup) match(gen uint64, src, dst netip.AddrPort) (pcbSocket, bool) {
	ne, be := binary.NativeEndian, binary.BigEndian
	inp, so := g.inp, g.so
	if len(inp) < xinpMinSize || len(so) < xsoMinSize {
		return pcbSocket{}, false
	}
	if ne.Uint64(inp[xinpGencnt:]) > gen || int32(ne.Uint32(so[xsoProtocol:])) != ipprotoTCP {
		return pcbSocket{}, false
	}
	var local, foreign netip.Addr
	switch vflag := inp[xinpVflag]; {
	case vflag&inpIPv4 != 0:
		local = netip.AddrFrom4([4]byte(inp[xinpLaddr+12:]))
		foreign = netip.AddrFrom4([4]byte(inp[xinpFaddr+12:]))
	case vflag&inpIPv6 != 0: // an IPv6 socket reports IPv4 peers mapped
		local = netip.AddrFrom16([16]byte(inp[xinpLaddr:])).Unmap()
		foreign = netip.AddrFrom16([16]byte(inp[xinpFaddr:])).Unmap()
	default:
		return pcbSocket{}, false
	}
	if netip.AddrPortFrom(local, be.Uint16(inp[xinpLport:])) != src ||
		netip.AddrPortFrom(foreign, be.Uint16(inp[xinpFport:])) != dst {
		return pcbSocket{}, false
	}
	if len(g.tcp) >= xtMinSize {
		switch int32(ne.Uint32(g.tcp[xtState:])) {
		case tcpsClosed, tcpsListen, tcpsTimeWait:
			return pcbSocket{}, false
		}
	}
	s := pcbSocket{uid: ne.Uint32(so[xsoUID:])}
	if pid := int32(ne.Uint32(so[xsoEPID:])); pid > 0 {
		s.pid = int(pid)
	} else if pid := int32(ne.Uint32(so[xsoLastPID:])); pid > 0 {
		s.pid = int(pid)
	}
	return s, true
}

// roundUp8 is xnu's ROUNDUP64: n rounded up to a multiple of 8.
func roundUp8(n int) int { return (n + 7) &^ 7 }
