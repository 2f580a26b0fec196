package socks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
)

// The parsers below read one message each from the front of b, which may
// hold more (pipelined) bytes or less: they return errShort while b holds
// only the start of a message, the message and its length n otherwise, or
// a *protoError. They never read past the message, never allocate, and
// return slices that alias b.

// Protocol numbers (RFC 1928, RFC 1929, SOCKS4 and 4a).
const (
	version4 = 4
	version5 = 5

	methodNone     = 0x00
	methodPassword = 0x02
	methodNoneOK   = 0xFF // no acceptable method

	authVersion = 1
	authOK      = 0
	authFailed  = 1

	cmdConnect   = 1
	cmdBind      = 2
	cmdAssociate = 3

	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4

	rep5OK          = 0x00
	rep5Failure     = 0x01
	rep5Unreachable = 0x04
	rep5Refused     = 0x05
	rep5BadCommand  = 0x07
	rep5BadAddress  = 0x08

	rep4OK     = 0x5A
	rep4Failed = 0x5B

	// maxUserID and maxHost bound SOCKS4's NUL-terminated fields, which
	// have no length byte; 255 is what SOCKS5 allows for either.
	maxUserID = 255
	maxHost   = 255

	// maxMessage is the longest message of either protocol: the RFC 1929
	// request (1+1+255+1+255). SOCKS4a's is 8+256+256 = 520.
	maxMessage = 520
)

// errShort is the parsers' "read more": b holds only the start of a message.
var errShort = errors.New("socks: message incomplete")

// protoError is a message the server refuses: why (for the log), the
// step that failed, which chooses the reply's format, and the reply code.
type protoError struct {
	step step
	rep  byte
	why  string
}

// step is a step of the handshake, for the reply to a refusal.
type step int

const (
	stepNone    step = iota // no protocol known: no reply
	stepMethod              // SOCKS5 method selection: VER METHOD
	stepAuth                // RFC 1929: VER STATUS
	stepRequest             // the request: a SOCKS5 or SOCKS4 reply
)

func (e *protoError) Error() string { return "socks: " + e.why }

// The refusals. They are values, so that refusing allocates nothing.
var (
	errVersion      = &protoError{step: stepNone, why: "not a SOCKS4 or SOCKS5 client"}
	errNoMethods    = &protoError{step: stepMethod, rep: methodNoneOK, why: "SOCKS5 greeting offers no method"}
	errNoMethod     = &protoError{step: stepMethod, rep: methodNoneOK, why: "SOCKS5 client offers no method the server accepts"}
	errAuthVersion  = &protoError{step: stepAuth, rep: authFailed, why: "username/password request of an unknown version"}
	errReqVersion5  = &protoError{step: stepRequest, rep: rep5Failure, why: "SOCKS5 request of another version"}
	errAddrType     = &protoError{step: stepRequest, rep: rep5BadAddress, why: "SOCKS5 request of an unknown address type"}
	errEmptyHost5   = &protoError{step: stepRequest, rep: rep5Failure, why: "SOCKS5 request for an empty domain name"}
	errBadHost5     = &protoError{step: stepRequest, rep: rep5Failure, why: "SOCKS5 request for a domain name with control characters or spaces"}
	errCommand5     = &protoError{step: stepRequest, rep: rep5BadCommand, why: "SOCKS5 command not supported (only CONNECT is)"}
	errCommand4     = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4 command not supported (only CONNECT is)"}
	errUserIDLong   = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4 user id longer than 255 bytes"}
	errHostLong     = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4a domain name longer than 255 bytes"}
	errEmptyHost4   = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4a request for an empty domain name"}
	errBadHost4     = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4a request for a domain name with control characters or spaces"}
	errAddress4     = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4 request for address 0.0.0.0"}
	errSOCKS4Auth   = &protoError{step: stepRequest, rep: rep4Failed, why: "SOCKS4 request while the server requires a password (SOCKS4 cannot give one)"}
	errAuthRejected = &protoError{step: stepAuth, rep: authFailed, why: "username/password rejected"}
)

// greeting is SOCKS5's first message: VER NMETHODS METHODS.
type greeting struct {
	methods []byte
}

// parseGreeting reads a SOCKS5 greeting; b[0] must be 5 (the caller
// dispatches on it).
func parseGreeting(b []byte) (g greeting, n int, err error) {
	if len(b) < 2 {
		return g, 0, errShort
	}
	if b[0] != version5 {
		return g, 0, errVersion
	}
	m := int(b[1])
	if m == 0 {
		return g, 0, errNoMethods
	}
	if len(b) < 2+m {
		return g, 0, errShort
	}
	return greeting{methods: b[2 : 2+m]}, 2 + m, nil
}

// authRequest is RFC 1929's request: VER ULEN UNAME PLEN PASSWD.
type authRequest struct {
	user, pass []byte
}

// parseAuth reads an RFC 1929 username/password request. Empty names and
// passwords, which the RFC does not allow, are left to the Auth function.
func parseAuth(b []byte) (a authRequest, n int, err error) {
	if len(b) < 1 {
		return a, 0, errShort
	}
	if b[0] != authVersion {
		return a, 0, errAuthVersion
	}
	if len(b) < 2 {
		return a, 0, errShort
	}
	ul := int(b[1])
	if len(b) < 2+ul+1 {
		return a, 0, errShort
	}
	pl := int(b[2+ul])
	n = 2 + ul + 1 + pl
	if len(b) < n {
		return a, 0, errShort
	}
	return authRequest{user: b[2 : 2+ul], pass: b[3+ul : n]}, n, nil
}

// target is what a CONNECT asks for: an address (dst) or a name (host,
// aliasing the input) and port.
type target struct {
	cmd  byte
	dst  netip.AddrPort // valid when the client gave an address
	host []byte         // non-empty when it gave a name
	port uint16
}

// parseRequest5 reads a SOCKS5 request: VER CMD RSV ATYP DST.ADDR
// DST.PORT. Commands other than CONNECT are refused once the whole request
// is read, so that no unread bytes turn the close into a reset that could
// overtake the reply.
func parseRequest5(b []byte) (t target, n int, err error) {
	if len(b) < 1 {
		return t, 0, errShort
	}
	if b[0] != version5 {
		return t, 0, errReqVersion5
	}
	if len(b) < 4 {
		return t, 0, errShort
	}
	t.cmd = b[1]
	switch b[3] {
	case atypIPv4:
		n = 4 + 4 + 2
		if len(b) < n {
			return t, 0, errShort
		}
		t.port = binary.BigEndian.Uint16(b[8:])
		t.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), t.port)
	case atypIPv6:
		n = 4 + 16 + 2
		if len(b) < n {
			return t, 0, errShort
		}
		t.port = binary.BigEndian.Uint16(b[20:])
		t.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[4:20])).Unmap(), t.port)
	case atypDomain:
		if len(b) < 5 {
			return t, 0, errShort
		}
		l := int(b[4])
		if l == 0 {
			return t, 0, errEmptyHost5
		}
		n = 5 + l + 2
		if len(b) < n {
			return t, 0, errShort
		}
		t.host = b[5 : 5+l]
		if !validHost(t.host) {
			return t, 0, errBadHost5
		}
		t.port = binary.BigEndian.Uint16(b[5+l:])
	default:
		return t, 0, errAddrType
	}
	if t.cmd != cmdConnect {
		// BIND, UDP ASSOCIATE and unknown commands alike.
		return t, 0, errCommand5
	}
	return t, n, nil
}

// parseRequest4 reads a SOCKS4 or SOCKS4a request: VN CD DSTPORT DSTIP
// USERID NUL, and for 4a (DSTIP 0.0.0.x, x not 0) HOST NUL. The user id is
// skipped: it is not a credential.
func parseRequest4(b []byte) (t target, n int, err error) {
	if len(b) < 1 {
		return t, 0, errShort
	}
	if b[0] != version4 {
		return t, 0, errVersion
	}
	if len(b) < 8 {
		return t, 0, errShort
	}
	t.cmd = b[1]
	t.port = binary.BigEndian.Uint16(b[2:])
	ip := [4]byte(b[4:8])
	end, err := nulField(b[8:], maxUserID, errUserIDLong)
	if err != nil {
		return t, 0, err
	}
	n = 8 + end + 1
	if ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && ip[3] != 0 {
		end, err := nulField(b[n:], maxHost, errHostLong)
		if err != nil {
			return t, 0, err
		}
		t.host = b[n : n+end]
		n += end + 1
		if len(t.host) == 0 {
			return t, 0, errEmptyHost4
		}
		if !validHost(t.host) {
			return t, 0, errBadHost4
		}
	} else {
		t.dst = netip.AddrPortFrom(netip.AddrFrom4(ip), t.port)
	}
	if t.cmd != cmdConnect {
		return t, 0, errCommand4
	}
	if t.dst.Addr().IsUnspecified() {
		return t, 0, errAddress4
	}
	return t, n, nil
}

// nulField finds the NUL that ends a field of at most max bytes at the
// start of b: the field's length, errShort, or tooLong.
func nulField(b []byte, max int, tooLong error) (int, error) {
	lim := min(len(b), max+1)
	if i := bytes.IndexByte(b[:lim], 0); i >= 0 {
		return i, nil
	}
	if len(b) > max {
		return 0, tooLong
	}
	return 0, errShort
}

// validHost refuses names that no resolver takes and that would garble a
// log line: control characters, spaces and DEL. Other bytes, UTF-8
// included, are the far side's to judge.
func validHost(h []byte) bool {
	for _, c := range h {
		if c <= ' ' || c == 0x7F {
			return false
		}
	}
	return true
}

// appendReply5 appends a SOCKS5 reply with code rep and bound address
// bnd (0.0.0.0:0 when it is not valid).
func appendReply5(b []byte, rep byte, bnd netip.AddrPort) []byte {
	a := bnd.Addr().Unmap()
	switch {
	case a.Is4():
		ip := a.As4()
		b = append(b, version5, rep, 0, atypIPv4)
		b = append(b, ip[:]...)
	case a.Is6():
		ip := a.As16()
		b = append(b, version5, rep, 0, atypIPv6)
		b = append(b, ip[:]...)
	default:
		b = append(b, version5, rep, 0, atypIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, bnd.Port())
}

// appendReply4 appends a SOCKS4 reply (VN 0, CD rep, DSTPORT, DSTIP);
// clients ignore the address, which is bnd's when it is IPv4.
func appendReply4(b []byte, rep byte, bnd netip.AddrPort) []byte {
	b = append(b, 0, rep)
	b = binary.BigEndian.AppendUint16(b, bnd.Port())
	if a := bnd.Addr().Unmap(); a.Is4() {
		ip := a.As4()
		return append(b, ip[:]...)
	}
	return append(b, 0, 0, 0, 0)
}
