package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"os"
	"strconv"
	"strings"
)

// The request head is read by net/http (http.ReadRequest): request line,
// header fields, and the body's framing (Content-Length or chunked, with
// their conflicts refused). What is written by hand here is only what
// net/http has no function for: telling a proxy request from one to the
// proxy itself, splitting the destination out of the authority, and the
// origin-form head sent upstream.

// bufSize is the bufio.Reader's: the most it reads ahead of the head.
const bufSize = 4096

// replyError is a request this server answers with an error status; text
// is the reply body's one line.
type replyError struct {
	status int
	text   string
}

func (e *replyError) Error() string { return e.text }

// errNoRequest is a client that closed (or timed out) before sending
// anything: it gets no reply.
var errNoRequest = errors.New("http proxy: client sent no request")

// headLimit counts the bytes read from the client while the head is read,
// and stops at max (0: no limit) so an endless head costs bounded memory.
// bufio reads ahead of the head by at most bufSize, so max is the head's
// limit plus bufSize; readHead checks the head's own size exactly.
type headLimit struct {
	r    io.Reader
	n    int64
	max  int64
	over bool
}

func (l *headLimit) Read(p []byte) (int, error) {
	if l.max > 0 {
		left := l.max - l.n
		if left <= 0 {
			l.over = true
			return 0, errHeadTooLarge
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

var errHeadTooLarge = errors.New("http proxy: request head too large")

// readHead reads one request head of at most maxBytes from br, which
// reads through lim. Its errors are *replyError or errNoRequest.
func readHead(br *bufio.Reader, lim *headLimit, maxBytes int) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	head := lim.n - int64(br.Buffered())
	if lim.over || head > int64(maxBytes) {
		return nil, &replyError{http.StatusRequestHeaderFieldsTooLarge,
			"request head larger than " + strconv.Itoa(maxBytes) + " bytes"}
	}
	if err != nil {
		var ne net.Error
		switch {
		case lim.n == 0 && (errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout()):
			return nil, errNoRequest
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &replyError{http.StatusRequestTimeout, "request head not received in time"}
		}
		return nil, &replyError{http.StatusBadRequest, "malformed request head: " + redact(err)}
	}
	if req.ProtoMajor != 1 {
		return nil, &replyError{http.StatusHTTPVersionNotSupported, "only HTTP/1.0 and HTTP/1.1 are served"}
	}
	return req, nil
}

// redact is err's text up to anything quoted from the request: net/http
// quotes the offending line (`malformed MIME header line: ...`), which
// could be a credential; the reply and the log say only what was wrong.
func redact(err error) string {
	s := err.Error()
	if i := strings.IndexAny(s, ":\""); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// target is where a request goes.
type target struct {
	connect bool
	host    string     // a name, or empty
	addr    netip.Addr // an IP literal, or invalid
	port    uint16
	// authority is host:port as the client gave it, for the upstream's
	// Host header, the reply texts and the log.
	authority string
}

func (t target) String() string {
	if t.addr.IsValid() {
		return netip.AddrPortFrom(t.addr, t.port).String()
	}
	return net.JoinHostPort(t.host, strconv.Itoa(int(t.port)))
}

// notProxy is the reply to a request for the proxy itself; local is the
// listener's address, for the example.
func notProxy(local string) *replyError {
	if local == "" {
		local = "HOST:PORT"
	}
	return &replyError{http.StatusBadRequest, "this is shunt's HTTP proxy, not a web server: " +
		"use it as a proxy, e.g. curl -x http://" + local + " http://example.com/ " +
		"or HTTPS_PROXY=http://" + local}
}

// classify finds req's destination: CONNECT host:port, or an http://
// URL in absolute form. local is the listener's address, for notProxy.
func classify(req *http.Request, local string) (target, error) {
	if req.Method == http.MethodConnect {
		return connectTarget(req, local)
	}
	u := req.URL
	if u.Scheme == "" && u.Host == "" {
		// Origin form ("GET / HTTP/1.1") or "*": a request for us.
		return target{}, notProxy(local)
	}
	switch u.Scheme {
	case "http":
	case "https":
		return target{}, &replyError{http.StatusBadRequest,
			"https:// URLs are not forwarded: use CONNECT (HTTPS_PROXY does)"}
	default:
		return target{}, &replyError{http.StatusBadRequest, "only http:// URLs are forwarded"}
	}
	if u.Host == "" {
		return target{}, &replyError{http.StatusBadRequest, "the URL has no host"}
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	t, err := makeTarget(u.Hostname(), port)
	t.authority = u.Host
	return t, err
}

func connectTarget(req *http.Request, local string) (target, error) {
	// ReadRequest puts CONNECT's authority into URL.Host; anything else
	// (a path, user info, a zone in escaped form) makes it differ from
	// what the client wrote.
	if strings.HasPrefix(req.RequestURI, "/") {
		return target{}, notProxy(local)
	}
	if req.URL.Host != req.RequestURI {
		return target{}, &replyError{http.StatusBadRequest, "CONNECT needs host:port"}
	}
	host, port, err := net.SplitHostPort(req.RequestURI)
	if err != nil {
		return target{}, &replyError{http.StatusBadRequest, "CONNECT needs host:port"}
	}
	t, err := makeTarget(host, port)
	t.connect, t.authority = true, req.RequestURI
	return t, err
}

func makeTarget(host, port string) (target, error) {
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return target{}, &replyError{http.StatusBadRequest, "the port must be a number from 1 to 65535"}
	}
	t := target{port: uint16(p)}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return target{}, &replyError{http.StatusBadRequest, "an address with a zone cannot be proxied"}
		}
		t.addr = a
		return t, nil
	}
	if !validName(host) {
		return target{}, &replyError{http.StatusBadRequest, "the host is neither an IP address nor a DNS name"}
	}
	t.host = host
	return t, nil
}

// validName reports whether host can be a DNS name as a resolver takes
// it: letters, digits, '-', '_' and '.', at most 253 bytes. (url.Parse
// lets through more, such as '!' or '$'; the name goes to an SSH server
// and into rules, so it is checked here.)
func validName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// originForm is the request target of an absolute-form request without
// its scheme and authority, byte for byte as the client wrote it (not
// re-escaped): "http://h:1/a?b" -> "/a?b", "http://h?b" -> "/?b",
// "http://h" -> "/" ("*" for OPTIONS, RFC 9112 section 3.2.4). It splits
// as url.Parse does: the authority ends at the first '/' or '?'.
func originForm(method, uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	i := strings.IndexAny(rest, "/?")
	switch {
	case i < 0 && method == http.MethodOptions:
		return "*"
	case i < 0:
		return "/"
	case rest[i] == '?':
		return "/" + rest[i:]
	}
	return rest[i:]
}

// hopByHop reports whether a header field (in canonical form) is for one
// connection only (RFC 9110 section 7.6.1, and the ones proxies know):
// the proxy does not forward it.
func hopByHop(key string) bool {
	switch key {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// endToEnd is a copy of header without the hop-by-hop fields and the
// fields its Connection names: what a proxy passes on, either way.
func endToEnd(header http.Header) http.Header {
	h := header.Clone()
	if h == nil {
		h = http.Header{}
	}
	for _, v := range header["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for k := range h {
		if hopByHop(k) {
			delete(h, k)
		}
	}
	return h
}

// upstreamHead is the head sent upstream for a forwarded request: origin
// form, in the client's HTTP version (so that the response suits the
// client: no chunked response to an HTTP/1.0 client), Host set to the
// URL's authority, hop-by-hop fields and the fields Connection names
// dropped, the body's framing as net/http read it, and
// "Connection: close". chunked says the body is to be sent chunked.
func upstreamHead(req *http.Request, t target) (head []byte, chunked bool) {
	h := endToEnd(req.Header)
	delete(h, "Host")
	_, sentLength := h["Content-Length"]
	delete(h, "Content-Length")

	var b bytes.Buffer
	b.WriteString(req.Method)
	b.WriteByte(' ')
	b.WriteString(originForm(req.Method, req.RequestURI))
	b.WriteString(" HTTP/1.")
	b.WriteString(strconv.Itoa(req.ProtoMinor))
	b.WriteString("\r\nHost: ")
	b.WriteString(t.authority)
	b.WriteString("\r\n")
	h.Write(&b) // sorted, values with line breaks made spaces
	chunked = len(req.TransferEncoding) > 0
	switch {
	case chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case req.ContentLength > 0 || sentLength:
		b.WriteString("Content-Length: ")
		b.WriteString(strconv.FormatInt(req.ContentLength, 10))
		b.WriteString("\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes(), chunked
}

// reply is a complete error response with a one-line text body.
func reply(status int, text string) []byte {
	body := text + "\n"
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(status))
	b.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ")
	b.WriteString(strconv.Itoa(len(body)))
	b.WriteString("\r\nConnection: close\r\n\r\n")
	b.WriteString(body)
	return b.Bytes()
}

// refusalReply is the status and text for a Connect error: the text
// names the destination as the client gave it and the kind of refusal,
// never the error's own text (which is the engine's, for the log).
func refusalReply(kind Refusal, t target) (int, string) {
	dst := t.String()
	switch kind {
	case RefusalBlocked:
		return http.StatusForbidden, "shunt: " + dst + " is blocked by shunt's rules"
	case RefusalRefused:
		return http.StatusBadGateway, "shunt: " + dst + " refused the connection"
	case RefusalUnreachable:
		return http.StatusBadGateway, "shunt: " + dst + " is unreachable"
	case RefusalTimeout:
		return http.StatusGatewayTimeout, "shunt: connecting to " + dst + " timed out"
	}
	return http.StatusBadGateway, "shunt: could not connect to " + dst
}
