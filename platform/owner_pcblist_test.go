package platform

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// pcb is one socket of a net.inet.tcp.pcblist_n fixture.
type pcb struct {
	local, foreign netip.AddrPort
	vflag          byte // 0: INP_IPV4 or INP_IPV6, by local's family
	uid            uint32
	lastPID, ePID  int32
	state          int32  // 0: ESTABLISHED (4)
	gencnt         uint64 // 0: 1
	protocol       int32  // 0: TCP
	noSocket       bool   // the kernel's records of a PCB without socket: buffer kinds 0
	reversed       bool   // its records in reverse order
	shortSocket    bool   // an xsocket_n that ends before so_e_pid
}

// Sizes of the records the builder writes (xnu's, but xtcpcb_n's, whose
// tail the parser never reads).
const (
	fixXinpcbN   = 104
	fixXsocketN  = 104
	fixXsockbufN = 32
	fixXsockstat = 136
	fixXtcpcbN   = 196
)

// buildPCBList lays pcbs out as the kernel does: xinpgen, each PCB's
// records rounded up to 8 bytes, and the closing xinpgen.
func buildPCBList(gen uint64, pcbs ...pcb) []byte {
	ne := binary.NativeEndian
	xig := func() []byte {
		b := make([]byte, sizeofXinpgen)
		ne.PutUint32(b, sizeofXinpgen)
		ne.PutUint32(b[4:], uint32(len(pcbs)))
		ne.PutUint64(b[8:], gen)
		return b
	}
	rec := func(size int, kind uint32) []byte {
		b := make([]byte, roundUp8(size))
		ne.PutUint32(b, uint32(size))
		ne.PutUint32(b[4:], kind)
		return b
	}
	out := xig()
	for _, p := range pcbs {
		inp := rec(fixXinpcbN, xsoInpcb)
		binary.BigEndian.PutUint16(inp[xinpFport:], p.foreign.Port())
		binary.BigEndian.PutUint16(inp[xinpLport:], p.local.Port())
		gc := p.gencnt
		if gc == 0 {
			gc = 1
		}
		ne.PutUint64(inp[xinpGencnt:], gc)
		v := p.vflag
		if v == 0 {
			v = inpIPv4
			if p.local.Addr().Is6() {
				v = inpIPv6
			}
		}
		inp[xinpVflag] = v
		putAddr := func(at int, a netip.Addr) {
			if a.Is4() {
				a4 := a.As4()
				copy(inp[at+12:], a4[:])
				return
			}
			a16 := a.As16()
			copy(inp[at:], a16[:])
		}
		putAddr(xinpLaddr, p.local.Addr())
		putAddr(xinpFaddr, p.foreign.Addr())

		soSize := fixXsocketN
		if p.shortSocket {
			soSize = xsoEPID
		}
		so := rec(soSize, xsoSocket)
		proto := p.protocol
		if proto == 0 {
			proto = ipprotoTCP
		}
		ne.PutUint32(so[xsoProtocol:], uint32(proto))
		if !p.shortSocket {
			ne.PutUint32(so[xsoUID:], p.uid)
			ne.PutUint32(so[xsoLastPID:], uint32(p.lastPID))
			ne.PutUint32(so[xsoEPID:], uint32(p.ePID))
		}
		bufKind := func(k uint32) uint32 {
			if p.noSocket {
				return 0
			}
			return k
		}
		rcv, snd := rec(fixXsockbufN, bufKind(0x2)), rec(fixXsockbufN, bufKind(0x4))
		st := rec(fixXsockstat, 0x8)
		tcp := rec(fixXtcpcbN, xsoTcpcb)
		state := p.state
		if state == 0 {
			state = 4
		}
		ne.PutUint32(tcp[xtState:], uint32(state))
		recs := [][]byte{inp, so, rcv, snd, st, tcp}
		if p.reversed {
			for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
				recs[i], recs[j] = recs[j], recs[i]
			}
		}
		for _, r := range recs {
			out = append(out, r...)
		}
	}
	return append(out, xig()...)
}

func TestFindPCB(t *testing.T) {
	ap := netip.MustParseAddrPort
	src, dst := ap("198.18.0.1:40000"), ap("10.1.2.3:25")
	src6, dst6 := ap("[fd53:6875:6e74::1]:40001"), ap("[fd00:1::5]:993")
	other := pcb{local: ap("192.168.1.5:51000"), foreign: ap("1.1.1.1:443"), uid: 501, ePID: 77}
	for _, tt := range []struct {
		name     string
		pcbs     []pcb
		src, dst netip.AddrPort
		want     pcbSocket
		ok       bool
	}{
		{"IPv4, the effective owner", []pcb{other, {local: src, foreign: dst, uid: 501, lastPID: 10, ePID: 11}}, src, dst, pcbSocket{uid: 501, pid: 11}, true},
		{"no effective owner: the last user", []pcb{{local: src, foreign: dst, uid: 502, lastPID: 10}}, src, dst, pcbSocket{uid: 502, pid: 10}, true},
		{"no process known", []pcb{{local: src, foreign: dst, uid: 502}}, src, dst, pcbSocket{uid: 502}, true},
		{"IPv6", []pcb{other, {local: src6, foreign: dst6, uid: 0, ePID: 1}}, src6, dst6, pcbSocket{uid: 0, pid: 1}, true},
		{"an IPv6 socket with IPv4-mapped addresses", []pcb{{local: ap("[::ffff:198.18.0.1]:40000"), foreign: ap("[::ffff:10.1.2.3]:25"), vflag: inpIPv6, uid: 503, ePID: 5}}, src, dst, pcbSocket{uid: 503, pid: 5}, true},
		{"records in another order", []pcb{{local: src, foreign: dst, uid: 501, ePID: 3, reversed: true}, other}, src, dst, pcbSocket{uid: 501, pid: 3}, true},
		{"after a PCB without socket", []pcb{{local: ap("198.18.0.1:1"), foreign: dst, noSocket: true}, {local: src, foreign: dst, uid: 504, ePID: 4}}, src, dst, pcbSocket{uid: 504, pid: 4}, true},
		{"TIME_WAIT then the live socket", []pcb{{local: src, foreign: dst, uid: 1, ePID: 1, state: tcpsTimeWait}, {local: src, foreign: dst, uid: 505, ePID: 9}}, src, dst, pcbSocket{uid: 505, pid: 9}, true},
		{"a listener on the port", []pcb{{local: netip.AddrPortFrom(netip.IPv4Unspecified(), 40000), foreign: netip.AddrPortFrom(netip.IPv4Unspecified(), 0), state: tcpsListen}}, src, dst, pcbSocket{}, false},
		{"a listener with the very addresses", []pcb{{local: src, foreign: dst, state: tcpsListen}}, src, dst, pcbSocket{}, false},
		{"freed during the copy", []pcb{{local: src, foreign: dst, uid: 501, gencnt: 100}}, src, dst, pcbSocket{}, false},
		{"not TCP", []pcb{{local: src, foreign: dst, uid: 501, protocol: 17}}, src, dst, pcbSocket{}, false},
		{"a socket record too short to read", []pcb{{local: src, foreign: dst, shortSocket: true}}, src, dst, pcbSocket{}, false},
		{"other ports", []pcb{{local: ap("198.18.0.1:40001"), foreign: dst}, {local: src, foreign: ap("10.1.2.3:26")}}, src, dst, pcbSocket{}, false},
		{"the other direction", []pcb{{local: dst, foreign: src, uid: 501}}, src, dst, pcbSocket{}, false},
		{"no PCBs", nil, src, dst, pcbSocket{}, false},
	} {
		got, ok, err := findPCB(buildPCBList(50, tt.pcbs...), tt.src, tt.dst)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("%s: %+v %v %v, want %+v %v", tt.name, got, ok, err, tt.want, tt.ok)
		}
	}
}

func TestFindPCBMalformed(t *testing.T) {
	ap := netip.MustParseAddrPort
	src, dst := ap("198.18.0.1:40000"), ap("10.1.2.3:25")
	good := buildPCBList(50, pcb{local: src, foreign: dst, uid: 501})
	overrun := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(overrun[sizeofXinpgen:], uint32(len(good)))
	badHead := append([]byte(nil), good...)
	binary.NativeEndian.PutUint32(badHead, 8)
	for name, list := range map[string][]byte{
		"empty":          nil,
		"short header":   good[:10],
		"bad header":     badHead,
		"record overrun": overrun,
	} {
		if _, _, err := findPCB(list, src, dst); !errors.Is(err, errPCBList) {
			t.Errorf("%s: error %v, want errPCBList", name, err)
		}
	}
	// Cut anywhere, the list is read up to the cut without a panic; the
	// socket is found only if all of its records are there.
	for n := sizeofXinpgen; n <= len(good); n++ {
		s, ok, err := findPCB(good[:n], src, dst)
		if ok && (s.uid != 501 || err != nil) {
			t.Errorf("cut at %d: %+v %v", n, s, err)
		}
	}
}

// FuzzPCBList reads arbitrary sysctl answers without a panic, and finds
// a socket built with arbitrary values behind arbitrary PCBs.
func FuzzPCBList(f *testing.F) {
	ap := netip.MustParseAddrPort
	f.Add(buildPCBList(50, pcb{local: ap("198.18.0.1:40000"), foreign: ap("10.1.2.3:25"), uid: 501, ePID: 4}), uint32(7), int32(9))
	f.Add(buildPCBList(50), uint32(0), int32(0))
	f.Add([]byte{24, 0, 0, 0}, uint32(1), int32(-1))
	f.Fuzz(func(t *testing.T, list []byte, uid uint32, pid int32) {
		src, dst := ap("198.18.0.1:40000"), ap("10.1.2.3:25")
		findPCB(list, src, dst)
		findPCB(list, ap("[fd53:6875:6e74::1]:1"), ap("[fd00::1]:2"))

		built := buildPCBList(50, pcb{local: ap("198.18.0.9:1"), foreign: dst}, pcb{local: src, foreign: dst, uid: uid, lastPID: 3, ePID: pid})
		want := pcbSocket{uid: uid, pid: 3}
		if pid > 0 {
			want.pid = int(pid)
		}
		if s, ok, err := findPCB(built, src, dst); !ok || err != nil || s != want {
			t.Fatalf("built socket: %+v %v %v, want %+v", s, ok, err, want)
		}
	})
}
