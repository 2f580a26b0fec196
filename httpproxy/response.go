package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The upstream's response is read by net/http (http.ReadResponse on a
// bufio.Reader over the exchange's pipe), not by hand: it knows the
// framing rules a proxy must follow to find a response's end (RFC 9112
// section 6.3: no body after HEAD or for 1xx, 204 and 304; chunked before
// Content-Length; conflicting lengths refused; else the body runs to the
// connection's close), and is fuzzed and kept up to date by others. Ours
// is only the head sent on to the client and its framing.

// bodyMode is how a response's body goes to the client.
type bodyMode int

const (
	bodyNone    bodyMode = iota // no body (HEAD, 1xx, 204, 304)
	bodyLength                  // Content-Length
	bodyChunked                 // chunked (the upstream's chunks decoded and re-framed)
	bodyClose                   // until the connection closes (an HTTP/1.0 client, length unknown)
)

// clientKeepAlive reports whether the client wants its connection kept
// after req: HTTP/1.1 unless it says "Connection: close", HTTP/1.0 when
// it says keep-alive (in Connection, or the older Proxy-Connection).
func clientKeepAlive(req *http.Request) bool {
	if req.ProtoAtLeast(1, 1) || !req.Close {
		return !req.Close
	}
	for _, v := range req.Header["Proxy-Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "keep-alive") {
				return !hasToken(req.Header, "Connection", "close")
			}
		}
	}
	return false
}

func hasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// responseHead is the head sent to the client for resp, the upstream's
// response to req: status line in our own version (HTTP/1.1, as RFC 9110
// section 6.2 asks of intermediaries), end-to-end fields only, the body's
// framing (see bodyMode) and what the client's connection does next:
// keep says whether the client wants it kept; the result says whether it
// is (not after a body that ends with the connection).
func responseHead(req *http.Request, resp *http.Response, keep bool) (head []byte, mode bodyMode, kept bool) {
	h := endToEnd(resp.Header)
	switch {
	case req.Method == http.MethodHead || resp.StatusCode < 200 ||
		resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
		// A Content-Length here describes the representation, not a
		// body: it goes on as it came.
		mode = bodyNone
	case resp.ContentLength >= 0 && len(resp.TransferEncoding) == 0:
		mode = bodyLength
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	case req.ProtoAtLeast(1, 1):
		mode = bodyChunked
		delete(h, "Content-Length")
	default:
		mode, keep = bodyClose, false
		delete(h, "Content-Length")
	}

	var b bytes.Buffer
	code := resp.StatusCode
	reason := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(code)))
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(code))
	b.WriteByte(' ')
	b.WriteString(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, reason))
	b.WriteString("\r\n")
	h.Write(&b)
	switch {
	case code < 200:
		// An interim response: the connection's fate is the final one's.
	case mode == bodyChunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if code >= 200 {
		switch {
		case !keep:
			b.WriteString("Connection: close\r\n")
		case !req.ProtoAtLeast(1, 1):
			b.WriteString("Connection: keep-alive\r\n")
		}
	}
	b.WriteString("\r\n")
	return b.Bytes(), mode, keep
}

// errBody is a response body that broke off: the upstream closed (or
// reset) before its end.
type errBody struct{ error }

func (e errBody) Unwrap() error { return e.error }

// relayBody copies resp's body to w framed as mode says, with buf (of
// chunkBufSize) for its reads. An error reading the body is an errBody;
// any other is w's.
func relayBody(w io.Writer, resp *http.Response, mode bodyMode, buf []byte) error {
	switch mode {
	case bodyNone:
		return nil
	case bodyChunked:
		for {
			n, err := resp.Body.Read(buf[chunkHead : chunkHead+chunkData])
			if err != nil && err != io.EOF {
				return errBody{err}
			}
			if n > 0 || err == io.EOF {
				if _, werr := w.Write(frameChunk(buf, n, err == io.EOF)); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				return nil
			}
		}
	}
	for {
		n, err := resp.Body.Read(buf[:chunkData])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		switch {
		case err == io.EOF:
			return nil
		case err != nil:
			return errBody{err}
		}
	}
}

// readResponse reads the upstream's final response to req from ur,
// passing interim (1xx) responses on to an HTTP/1.1 client through w. A
// 101 (Switching Protocols) is an error: Upgrade is never forwarded.
func readResponse(ur *bufio.Reader, w io.Writer, req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(ur, req)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode < 100:
			return nil, errors.New("http proxy: the upstream's status code is below 100")
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("http proxy: the upstream switched protocols, which was not asked for")
		case resp.StatusCode >= 200:
			return resp, nil
		case req.ProtoAtLeast(1, 1):
			head, _, _ := responseHead(req, resp, true)
			if _, err := w.Write(head); err != nil {
				return nil, err
			}
		}
	}
}
