package socks

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// req5 builds a SOCKS5 request: atyp, the address bytes (for a domain,
// its length byte comes first), the port.
func req5(cmd, atyp byte, addr []byte, port uint16) []byte {
	b := []byte{version5, cmd, 0, atyp}
	b = append(b, addr...)
	return binary.BigEndian.AppendUint16(b, port)
}

func domain(name string) []byte { return append([]byte{byte(len(name))}, name...) }

// req4 builds a SOCKS4 request; host non-empty makes it SOCKS4a.
func req4(cmd byte, port uint16, ip [4]byte, user, host string) []byte {
	b := []byte{version4, cmd}
	b = binary.BigEndian.AppendUint16(b, port)
	b = append(b, ip[:]...)
	b = append(append(b, user...), 0)
	if host != "" {
		b = append(append(b, host...), 0)
	}
	return b
}

func TestParseRequest5(t *testing.T) {
	long := strings.Repeat("a", 255)
	tests := []struct {
		name string
		in   []byte
		want target
		err  error
	}{
		{"ipv4", req5(cmdConnect, atypIPv4, []byte{10, 1, 2, 3}, 443), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("10.1.2.3:443"), port: 443}, nil},
		{"ipv6", req5(cmdConnect, atypIPv6, netip.MustParseAddr("2001:db8::1").AsSlice(), 22), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("[2001:db8::1]:22"), port: 22}, nil},
		{"ipv4-mapped ipv6 is unmapped", req5(cmdConnect, atypIPv6, netip.MustParseAddr("::ffff:10.0.0.1").AsSlice(), 80), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("10.0.0.1:80"), port: 80}, nil},
		{"domain", req5(cmdConnect, atypDomain, domain("internal.test"), 80), target{cmd: cmdConnect, host: []byte("internal.test"), port: 80}, nil},
		{"domain of 255 bytes", req5(cmdConnect, atypDomain, domain(long), 1), target{cmd: cmdConnect, host: []byte(long), port: 1}, nil},
		{"utf-8 domain is passed on", req5(cmdConnect, atypDomain, domain("bücher.test"), 80), target{cmd: cmdConnect, host: []byte("bücher.test"), port: 80}, nil},
		{"empty domain", req5(cmdConnect, atypDomain, domain(""), 80), target{}, errEmptyHost5},
		{"domain with a space", req5(cmdConnect, atypDomain, domain("a b"), 80), target{}, errBadHost5},
		{"domain with NUL", req5(cmdConnect, atypDomain, domain("a\x00b"), 80), target{}, errBadHost5},
		{"domain with a newline", req5(cmdConnect, atypDomain, domain("a\nINFO fake"), 80), target{}, errBadHost5},
		{"bind", req5(cmdBind, atypIPv4, []byte{10, 1, 2, 3}, 443), target{}, errCommand5},
		{"udp associate", req5(cmdAssociate, atypIPv4, []byte{0, 0, 0, 0}, 0), target{}, errCommand5},
		{"unknown command", req5(9, atypDomain, domain("x"), 1), target{}, errCommand5},
		{"unknown address type", []byte{5, 1, 0, 2, 1, 2, 3, 4, 0, 80}, target{}, errAddrType},
		{"unknown address type, short", []byte{5, 1, 0, 7}, target{}, errAddrType},
		{"wrong version", req5(cmdConnect, atypIPv4, []byte{1, 2, 3, 4}, 1)[1:], target{}, errReqVersion5},
		{"version 4", []byte{4, 1, 0, 1}, target{}, errReqVersion5},
		{"empty", nil, target{}, errShort},
		{"header only", []byte{5, 1, 0}, target{}, errShort},
		{"truncated ipv4", []byte{5, 1, 0, 1, 10, 1, 2, 3, 0}, target{}, errShort},
		{"truncated ipv6", req5(cmdConnect, atypIPv6, make([]byte, 16), 1)[:21], target{}, errShort},
		{"truncated domain", req5(cmdConnect, atypDomain, domain("internal.test"), 80)[:10], target{}, errShort},
		{"no domain length", []byte{5, 1, 0, 3}, target{}, errShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := parseRequest5(tt.in)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				if n != 0 {
					t.Errorf("n = %d on error", n)
				}
				return
			}
			checkTarget(t, got, tt.want)
			if n != len(tt.in) {
				t.Errorf("n = %d, want %d", n, len(tt.in))
			}
			// Every proper prefix asks for more; pipelined bytes behind
			// the request are not taken.
			for i := range tt.in {
				if _, _, err := parseRequest5(tt.in[:i]); err != errShort {
					t.Fatalf("prefix of %d bytes: err = %v, want errShort", i, err)
				}
			}
			if _, n, _ := parseRequest5(append(bytes.Clone(tt.in), "GET / HTTP/1.1\r\n"...)); n != len(tt.in) {
				t.Errorf("with pipelined bytes: n = %d, want %d", n, len(tt.in))
			}
		})
	}
}

func checkTarget(t *testing.T, got, want target) {
	t.Helper()
	if got.cmd != want.cmd || got.dst != want.dst || !bytes.Equal(got.host, want.host) || got.port != want.port {
		t.Errorf("got {cmd %d dst %v host %q port %d}, want {cmd %d dst %v host %q port %d}",
			got.cmd, got.dst, got.host, got.port, want.cmd, want.dst, want.host, want.port)
	}
}

func TestParseRequest4(t *testing.T) {
	long := strings.Repeat("u", 255)
	tests := []struct {
		name string
		in   []byte
		want target
		err  error
	}{
		{"socks4", req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, "", ""), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("10.1.2.3:80"), port: 80}, nil},
		{"socks4 with user id", req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, "alice", ""), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("10.1.2.3:80"), port: 80}, nil},
		{"user id of 255 bytes", req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, long, ""), target{cmd: cmdConnect, dst: netip.MustParseAddrPort("10.1.2.3:80"), port: 80}, nil},
		{"socks4a", req4(cmdConnect, 443, [4]byte{0, 0, 0, 1}, "", "internal.test"), target{cmd: cmdConnect, host: []byte("internal.test"), port: 443}, nil},
		{"socks4a with user id", req4(cmdConnect, 443, [4]byte{0, 0, 0, 255}, "bob", "internal.test"), target{cmd: cmdConnect, host: []byte("internal.test"), port: 443}, nil},
		{"socks4a host of 255 bytes", req4(cmdConnect, 443, [4]byte{0, 0, 0, 1}, "", strings.Repeat("h", 255)), target{cmd: cmdConnect, host: []byte(strings.Repeat("h", 255)), port: 443}, nil},
		{"0.0.0.0", req4(cmdConnect, 80, [4]byte{}, "", ""), target{}, errAddress4},
		{"socks4a empty host", append(req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", ""), 0), target{}, errEmptyHost4},
		{"socks4a host with a space", req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", "a b"), target{}, errBadHost4},
		{"bind", req4(cmdBind, 80, [4]byte{10, 1, 2, 3}, "", ""), target{}, errCommand4},
		{"unknown command", req4(7, 80, [4]byte{0, 0, 0, 1}, "", "x"), target{}, errCommand4},
		{"user id too long", append(req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, "", "")[:8], strings.Repeat("u", 256)...), target{}, errUserIDLong},
		{"host too long", append(req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", ""), strings.Repeat("h", 256)...), target{}, errHostLong},
		{"wrong version", []byte{5, 1, 0, 80, 10, 1, 2, 3, 0}, target{}, errVersion},
		{"empty", nil, target{}, errShort},
		{"no user id end", req4(cmdConnect, 80, [4]byte{10, 1, 2, 3}, "", "")[:8], target{}, errShort},
		{"no host end", req4(cmdConnect, 80, [4]byte{0, 0, 0, 1}, "", "internal.test")[:15], target{}, errShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n, err := parseRequest4(tt.in)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			checkTarget(t, got, tt.want)
			if n != len(tt.in) {
				t.Errorf("n = %d, want %d", n, len(tt.in))
			}
			for i := range tt.in {
				if _, _, err := parseRequest4(tt.in[:i]); err != errShort {
					t.Fatalf("prefix of %d bytes: err = %v, want errShort", i, err)
				}
			}
			if _, n, _ := parseRequest4(append(bytes.Clone(tt.in), "GET / HTTP/1.1\r\n"...)); n != len(tt.in) {
				t.Errorf("with pipelined bytes: n = %d, want %d", n, len(tt.in))
			}
		})
	}
}

func TestParseGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		methods []byte
		n       int
		err     error
	}{
		{"no auth", []byte{5, 1, 0}, []byte{0}, 3, nil},
		{"two methods, pipelined request", []byte{5, 2, 0, 2, 5, 1, 0}, []byte{0, 2}, 4, nil},
		{"255 methods", append([]byte{5, 255}, make([]byte, 255)...), make([]byte, 255), 257, nil},
		{"NMETHODS 0", []byte{5, 0}, nil, 0, errNoMethods},
		{"short", []byte{5}, nil, 0, errShort},
		{"truncated methods", []byte{5, 3, 0, 1}, nil, 0, errShort},
		{"wrong version", []byte{4, 1, 0}, nil, 0, errVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, n, err := parseGreeting(tt.in)
			if err != tt.err || n != tt.n || !bytes.Equal(g.methods, tt.methods) {
				t.Errorf("= %v, %d, %v; want %v, %d, %v", g.methods, n, err, tt.methods, tt.n, tt.err)
			}
		})
	}
}

func TestParseAuth(t *testing.T) {
	msg := func(user, pass string) []byte {
		b := append([]byte{1, byte(len(user))}, user...)
		return append(append(b, byte(len(pass))), pass...)
	}
	long := strings.Repeat("p", 255)
	tests := []struct {
		name       string
		in         []byte
		user, pass string
		err        error
	}{
		{"user and password", msg("alice", "s3cret"), "alice", "s3cret", nil},
		{"longest", msg(long, long), long, long, nil},
		{"empty password", msg("alice", ""), "alice", "", nil},
		{"wrong version", append([]byte{5}, msg("a", "b")[1:]...), "", "", errAuthVersion},
		{"empty", nil, "", "", errShort},
		{"truncated user", msg("alice", "s3cret")[:4], "", "", errShort},
		{"no password length", msg("alice", "s3cret")[:7], "", "", errShort},
		{"truncated password", msg("alice", "s3cret")[:10], "", "", errShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, n, err := parseAuth(tt.in)
			if err != tt.err || string(a.user) != tt.user || string(a.pass) != tt.pass {
				t.Fatalf("= %q, %q, %v; want %q, %q, %v", a.user, a.pass, err, tt.user, tt.pass, tt.err)
			}
			if err == nil && n != len(tt.in) {
				t.Errorf("n = %d, want %d", n, len(tt.in))
			}
		})
	}
}

func TestReplies(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"socks5 ipv4", appendReply5(nil, rep5OK, netip.MustParseAddrPort("127.0.0.1:1080")), []byte{5, 0, 0, 1, 127, 0, 0, 1, 0x04, 0x38}},
		{"socks5 ipv6", appendReply5(nil, rep5OK, netip.MustParseAddrPort("[::1]:1080")), append(append([]byte{5, 0, 0, 4}, netip.IPv6Loopback().AsSlice()...), 0x04, 0x38)},
		{"socks5 mapped", appendReply5(nil, rep5Refused, netip.MustParseAddrPort("[::ffff:127.0.0.1]:1")), []byte{5, 5, 0, 1, 127, 0, 0, 1, 0, 1}},
		{"socks5 none", appendReply5(nil, rep5Failure, netip.AddrPort{}), []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"socks4", appendReply4(nil, rep4OK, netip.MustParseAddrPort("127.0.0.1:1080")), []byte{0, 0x5A, 0x04, 0x38, 127, 0, 0, 1}},
		{"socks4 ipv6 bound", appendReply4(nil, rep4Failed, netip.MustParseAddrPort("[::1]:1080")), []byte{0, 0x5B, 0x04, 0x38, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s: % x, want % x", tt.name, tt.got, tt.want)
		}
	}
}

func TestReply5(t *testing.T) {
	want := map[Refusal]byte{RefusalFailed: 1, RefusalBlocked: 5, RefusalRefused: 5, RefusalUnreachable: 4, RefusalTimeout: 4, Refusal(99): 1}
	for r, code := range want {
		if got := reply5(r); got != code {
			t.Errorf("reply5(%v) = %d, want %d", r, got, code)
		}
	}
}
