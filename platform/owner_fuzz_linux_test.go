package platform

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strconv"
	"testing"
)

// FuzzParseStartTime reads arbitrary /proc/PID/stat text (a process names
// itself, so field 2 is anyone's choice): never a panic, and for a line of
// the kernel's shape, field 22.
func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("1234 (sh) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n"), "x")
	f.Add([]byte("1 ((a) b)) R"), ") ) )")
	f.Fuzz(func(t *testing.T, stat []byte, comm string) {
		parseStartTime(stat)
		// The same fields behind an arbitrary command name.
		line := "42 (" + comm + ") S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n"
		v, ok := parseStartTime([]byte(line))
		if !ok || v != 987654 {
			t.Fatalf("start time of %q: %d, %v", line, v, ok)
		}
	})
}

// FuzzNextDirent walks arbitrary getdents64 output: names are NUL-ended,
// the walk always ends, and it never reads past the buffer.
func FuzzNextDirent(f *testing.F) {
	ent := func(name string) []byte {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
		copy(b[19:], name)
		return b
	}
	f.Add(append(ent("1"), ent("self")...))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, ents []byte) {
		for len(ents) > 0 { // it ends: every step takes at least 19 bytes
			var name []byte
			before := len(ents)
			name, ents = nextDirent(ents)
			if name == nil && ents == nil {
				return
			}
			if len(ents) >= before {
				t.Fatal("no progress")
			}
			if name != nil {
				if name[len(name)-1] != 0 || bytes.IndexByte(name, 0) != len(name)-1 {
					t.Fatalf("name %q is not NUL-ended", name)
				}
				if pid, ok := parsePID(name); ok {
					if n, err := strconv.Atoi(string(name[:len(name)-1])); err != nil || n != pid {
						t.Fatalf("%q read as PID %d", name, pid)
					}
				}
			}
		}
	})
}

// FuzzParseDiagMsg reads arbitrary inet_diag answers: too short is an
// error, and a socket is returned only for the addresses asked for.
func FuzzParseDiagMsg(f *testing.F) {
	src := netip.MustParseAddrPort("10.0.0.2:40000")
	dst := netip.MustParseAddrPort("10.1.0.7:993")
	m := make([]byte, sizeofInetDiagMsg)
	m[0] = 2 // AF_INET
	binary.BigEndian.PutUint16(m[4:], src.Port())
	binary.BigEndian.PutUint16(m[6:], dst.Port())
	copy(m[8:], src.Addr().AsSlice())
	copy(m[24:], dst.Addr().AsSlice())
	f.Add(m)
	f.Add(m[:10])
	f.Fuzz(func(t *testing.T, m []byte) {
		if _, err := parseDiagMsg(m, src, dst); err == nil && len(m) < sizeofInetDiagMsg {
			t.Fatalf("accepted a message of %d bytes", len(m))
		}
	})
}
