package platform

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// tcpConn is one row of a GetExtendedTcpTable fixture.
type tcpConn struct {
	local, remote netip.AddrPort
	state, pid    uint32
}

// buildTCPTable lays rows out as MIB_TCPTABLE_OWNER_PID, or with v6 as
// MIB_TCP6TABLE_OWNER_PID, on a little-endian Windows. The unused upper
// bytes of the port DWORDs are set, as nothing promises they are zero.
func buildTCPTable(v6 bool, rows ...tcpConn) []byte {
	le := binary.LittleEndian
	b := le.AppendUint32(nil, uint32(len(rows)))
	port := func(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0xaa, 0xbb} }
	for _, r := range rows {
		if v6 {
			l, rm := r.local.Addr().As16(), r.remote.Addr().As16()
			b = append(b, l[:]...)
			b = le.AppendUint32(b, 0) // scope
			b = append(b, port(r.local.Port())...)
			b = append(b, rm[:]...)
			b = le.AppendUint32(b, 0)
			b = append(b, port(r.remote.Port())...)
			b = le.AppendUint32(b, r.state)
			b = le.AppendUint32(b, r.pid)
			continue
		}
		l, rm := r.local.Addr().As4(), r.remote.Addr().As4()
		b = le.AppendUint32(b, r.state)
		b = append(b, l[:]...)
		b = append(b, port(r.local.Port())...)
		b = append(b, rm[:]...)
		b = append(b, port(r.remote.Port())...)
		b = le.AppendUint32(b, r.pid)
	}
	return b
}

func TestFindTCPRow(t *testing.T) {
	ap := netip.MustParseAddrPort
	src, dst := ap("169.254.83.1:40000"), ap("10.1.2.3:25")
	src6, dst6 := ap("[fd53:6875:6e74::1]:40001"), ap("[fd00:1::5]:993")
	const estab, synSent = 5, 3
	other := tcpConn{local: ap("192.168.1.5:51000"), remote: ap("1.1.1.1:443"), state: estab, pid: 100}
	for _, tt := range []struct {
		name     string
		v6       bool
		rows     []tcpConn
		src, dst netip.AddrPort
		pid      uint32
		ok       bool
	}{
		{"IPv4", false, []tcpConn{other, {local: src, remote: dst, state: synSent, pid: 4242}}, src, dst, 4242, true},
		{"IPv6", true, []tcpConn{{local: src6, remote: dst6, state: estab, pid: 7}}, src6, dst6, 7, true},
		{"IPv4-mapped in the IPv6 table", true, []tcpConn{{local: ap("[::ffff:169.254.83.1]:40000"), remote: ap("[::ffff:10.1.2.3]:25"), state: estab, pid: 8}}, src, dst, 8, true},
		{"TIME_WAIT, then the live one", false, []tcpConn{{local: src, remote: dst, state: mibTCPStateTimeWait}, {local: src, remote: dst, state: estab, pid: 9}}, src, dst, 9, true},
		{"a listener", false, []tcpConn{{local: src, remote: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), state: mibTCPStateListen, pid: 4}}, src, dst, 0, false},
		{"closed and deleted", false, []tcpConn{{local: src, remote: dst, state: mibTCPStateClosed, pid: 1}, {local: src, remote: dst, state: mibTCPStateDeleteTCB, pid: 2}}, src, dst, 0, false},
		{"the other direction", false, []tcpConn{{local: dst, remote: src, state: estab, pid: 3}}, src, dst, 0, false},
		{"empty", false, nil, src, dst, 0, false},
	} {
		pid, ok, err := findTCPRow(buildTCPTable(tt.v6, tt.rows...), tt.v6, tt.src, tt.dst)
		if err != nil || ok != tt.ok || pid != tt.pid {
			t.Errorf("%s: pid %d %v %v, want %d %v", tt.name, pid, ok, err, tt.pid, tt.ok)
		}
	}
	// More rows announced than there are bytes.
	short := buildTCPTable(false, other)
	binary.LittleEndian.PutUint32(short, 2)
	for name, table := range map[string][]byte{"rows missing": short, "no header": {1, 0}} {
		if _, _, err := findTCPRow(table, false, src, dst); !errors.Is(err, errTCPTable) {
			t.Errorf("%s: %v, want errTCPTable", name, err)
		}
	}
}

// FuzzTCPTable reads arbitrary tables of both families without a panic,
// and finds a row built with arbitrary ports and PID behind another.
func FuzzTCPTable(f *testing.F) {
	ap := netip.MustParseAddrPort
	f.Add(buildTCPTable(false, tcpConn{local: ap("169.254.83.1:40000"), remote: ap("10.1.2.3:25"), state: 5, pid: 1}), uint16(1), uint16(2), uint32(3))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(0), uint16(0), uint32(0))
	f.Fuzz(func(t *testing.T, table []byte, lport, rport uint16, pid uint32) {
		findTCPRow(table, false, ap("169.254.83.1:40000"), ap("10.1.2.3:25"))
		findTCPRow(table, true, ap("[fd53:6875:6e74::1]:1"), ap("[fd00::1]:2"))
		for _, v6 := range []bool{false, true} {
			src := netip.AddrPortFrom(netip.MustParseAddr("169.254.83.1"), lport)
			dst := netip.AddrPortFrom(netip.MustParseAddr("10.1.2.3"), rport)
			if v6 {
				src = netip.AddrPortFrom(netip.MustParseAddr("fd53:6875:6e74::1"), lport)
				dst = netip.AddrPortFrom(netip.MustParseAddr("fd00::1"), rport)
			}
			decoy := tcpConn{local: netip.AddrPortFrom(src.Addr(), lport+1), remote: dst, state: 5, pid: pid + 1}
			built := buildTCPTable(v6, decoy, tcpConn{local: src, remote: dst, state: 5, pid: pid})
			if got, ok, err := findTCPRow(built, v6, src, dst); !ok || err != nil || got != pid {
				t.Fatalf("v6=%v: pid %d %v %v, want %d", v6, got, ok, err, pid)
			}
		}
	})
}
