package platform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// procArgs lays out a kern.procargs2 answer: argc, the executable path,
// NUL padding, argv and the environment.
func procArgs(path string, args ...string) []byte {
	b := binary.NativeEndian.AppendUint32(nil, uint32(len(args)))
	b = append(append(b, path...), 0, 0, 0)
	for _, a := range args {
		b = append(append(b, a...), 0)
	}
	return append(b, "SECRET=x\x00"...)
}

func TestParseProcArgs(t *testing.T) {
	for _, tt := range []struct {
		in   []byte
		want string
		ok   bool
	}{
		{procArgs("/usr/bin/curl", "curl", "-s", "https://example.com"), "/usr/bin/curl", true},
		{procArgs("/Applications/Some App.app/Contents/MacOS/Some App"), "/Applications/Some App.app/Contents/MacOS/Some App", true},
		{procArgs("./tool", "./tool"), "./tool", true},
		{procArgs(""), "", false},
		{[]byte{1, 0, 0, 0, '/', 'b'}, "", false}, // not NUL-terminated
		{[]byte{1, 0, 0}, "", false},
		{nil, "", false},
	} {
		got, err := parseProcArgs(tt.in)
		if got != tt.want || (err == nil) != tt.ok || (err != nil && !errors.Is(err, errProcArgs)) {
			t.Errorf("%q: %q %v, want %q ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzProcArgs reads arbitrary answers: never a panic, a path is never
// empty and holds no NUL, and a built answer gives its path back.
func FuzzProcArgs(f *testing.F) {
	f.Add(procArgs("/usr/bin/curl", "curl"), "/bin/sh")
	f.Add([]byte{0, 0, 0, 0, 0}, "")
	f.Fuzz(func(t *testing.T, b []byte, path string) {
		if p, err := parseProcArgs(b); err == nil && (p == "" || bytes.IndexByte([]byte(p), 0) >= 0) {
			t.Fatalf("%q read as %q", b, p)
		}
		if path == "" || bytes.IndexByte([]byte(path), 0) >= 0 {
			return
		}
		if p, err := parseProcArgs(procArgs(path, "a", "b")); err != nil || p != path {
			t.Fatalf("path %q read as %q, %v", path, p, err)
		}
	})
}
