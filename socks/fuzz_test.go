package socks

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzSOCKS5Request feeds arbitrary bytes to the SOCKS5 parsers (greeting,
// username/password, request). None may panic or read past its input; a
// request that parses encodes back to the bytes it was read from.
func FuzzSOCKS5Request(f *testing.F) {
	f.Add(req5(cmdConnect, atypIPv4, []byte{10, 1, 2, 3}, 443))
	f.Add(req5(cmdConnect, atypIPv6, make([]byte, 16), 22))
	f.Add(req5(cmdConnect, atypDomain, domain("internal.test"), 80))
	f.Add(req5(cmdBind, atypDomain, domain(""), 80))
	f.Add([]byte{5, 2, 0, 2})
	f.Add([]byte{1, 5, 'a', 'l', 'i', 'c', 'e', 1, 'x'})
	f.Add([]byte{5, 1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return // longer than any message: the parsers look at the front only
		}
		in := bytes.Clone(b)
		if g, n, err := parseGreeting(b); err == nil {
			if n != 2+len(g.methods) || n > len(b) || len(g.methods) == 0 {
				t.Fatalf("greeting: n %d, %d methods, input %d", n, len(g.methods), len(b))
			}
		} else if n != 0 {
			t.Fatalf("greeting: n %d with %v", n, err)
		}
		if a, n, err := parseAuth(b); err == nil {
			if n != 3+len(a.user)+len(a.pass) || n > len(b) {
				t.Fatalf("auth: n %d, user %d, pass %d, input %d", n, len(a.user), len(a.pass), len(b))
			}
		}
		r, n, err := parseRequest5(b)
		if !bytes.Equal(b, in) {
			t.Fatal("a parser changed its input")
		}
		if err != nil {
			if _, ok := err.(*protoError); !ok && err != errShort {
				t.Fatalf("error of an unknown kind: %v", err)
			}
			return
		}
		if n > len(b) || r.cmd != cmdConnect {
			t.Fatalf("n %d of %d, cmd %d", n, len(b), r.cmd)
		}
		var enc []byte
		switch {
		case len(r.host) > 0:
			if r.dst.IsValid() {
				t.Fatal("both a name and an address")
			}
			enc = req5(cmdConnect, atypDomain, domain(string(r.host)), r.port)
		case r.dst.Addr().Is4() && b[3] == atypIPv4:
			a := r.dst.Addr().As4()
			enc = req5(cmdConnect, atypIPv4, a[:], r.port)
		case b[3] == atypIPv6:
			a := r.dst.Addr().As16() // a mapped address comes back mapped
			enc = req5(cmdConnect, atypIPv6, a[:], r.port)
		default:
			t.Fatalf("neither a name nor an address: %+v", r)
		}
		if r.dst.IsValid() && r.dst.Port() != r.port {
			t.Fatalf("port %d, dst %v", r.port, r.dst)
		}
		enc[2] = b[2] // RSV is not checked
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("encodes to % x, read from % x", enc, b[:n])
		}
	})
}

// FuzzSOCKS4Request feeds arbitrary bytes to the SOCKS4/4a request
// parser: no panic, nothing read past the input or past the bounds of
// its fields, and a request that parses holds what it was read from.
func FuzzSOCKS4Request(f *testing.F) {
	f.Add(req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, "alice", ""))
	f.Add(req4(cmdConnect, 443, [4]byte{0, 0, 0, 1}, "", "internal.test"))
	f.Add(req4(cmdBind, 443, [4]byte{0, 0, 0, 1}, "", ""))
	f.Add([]byte{4, 1, 0, 80, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 4096 {
			return
		}
		r, n, err := parseRequest4(b)
		if err != nil {
			if _, ok := err.(*protoError); !ok && err != errShort {
				t.Fatalf("error of an unknown kind: %v", err)
			}
			return
		}
		if n > len(b) || n > 8+maxUserID+1+maxHost+1 || r.cmd != cmdConnect {
			t.Fatalf("n %d of %d, cmd %d", n, len(b), r.cmd)
		}
		if b[n-1] != 0 || binary.BigEndian.Uint16(b[2:]) != r.port {
			t.Fatalf("request does not end in NUL or port %d wrong: % x", r.port, b[:n])
		}
		if len(r.host) > 0 {
			if r.dst.IsValid() || !bytes.HasSuffix(b[:n], append(bytes.Clone(r.host), 0)) {
				t.Fatalf("host %q from % x", r.host, b[:n])
			}
			return
		}
		if ip := r.dst.Addr().As4(); !bytes.Equal(ip[:], b[4:8]) || r.dst.Addr().IsUnspecified() {
			t.Fatalf("dst %v from % x", r.dst, b[:n])
		}
	})
}
