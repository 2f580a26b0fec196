package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzRequestHead feeds bytes to the request-head handling (reading,
// classifying, the upstream head and the re-framed body). It must never
// panic; an error must be a reply that parses as an HTTP response; a
// forwarded request must come out as a request net/http reads, without
// hop-by-hop fields, with "Connection: close", and with the body the
// client sent.
func FuzzRequestHead(f *testing.F) {
	for _, s := range []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\nearly",
		"GET http://example.com/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic eA==\r\n\r\n",
		"POST http://u:p@example.com:8080/a?b HTTP/1.1\r\nConnection: X-A, close\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc",
		"PUT http://example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n3\r\nabc\r\n0\r\nX: 1\r\n\r\n",
		"OPTIONS http://example.com HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"GET https://example.com/ HTTP/1.1\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nX: " + strings.Repeat("y", 1100) + "\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(fuzzRequestHead)
}

// fuzzRequestHead is FuzzRequestHead's check of one input.
func fuzzRequestHead(t *testing.T, data []byte) {
	const maxBytes = 1024
	lim := &headLimit{r: bytes.NewReader(data), max: maxBytes + bufSize}
	br := bufio.NewReaderSize(lim, bufSize)
	req, err := readHead(br, lim, maxBytes)
	if err != nil {
		checkReply(t, err)
		return
	}
	lim.max = 0
	tgt, err := classify(req, "127.0.0.1:8080")
	if err != nil {
		checkReply(t, err)
		return
	}
	if tgt.port == 0 || tgt.addr.IsValid() == (tgt.host != "") {
		t.Fatalf("target %+v", tgt)
	}
	if tgt.connect {
		return
	}
	head, chunked := upstreamHead(req, tgt)
	out, err := io.ReadAll(newForwardReader(head, req.Body, chunked))
	if err != nil {
		return // the body was cut short
	}
	fwd, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(out)))
	if err != nil {
		t.Fatalf("the upstream head does not parse: %v\n%q", err, out)
	}
	for k := range fwd.Header {
		if hopByHop(k) && k != "Connection" {
			t.Fatalf("%s forwarded:\n%q", k, out)
		}
	}
	if fwd.Header.Get("Connection") != "close" || fwd.Host != tgt.authority || fwd.Method != req.Method {
		t.Fatalf("upstream head:\n%q", out)
	}
	got, err := io.ReadAll(fwd.Body)
	if err != nil {
		t.Fatalf("the upstream body: %v\n%q", err, out)
	}
	orig, _ := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	want, err := io.ReadAll(orig.Body)
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("body %q, the client sent %q", got, want)
	}
}

// checkReply checks a head error: no reply, or one that parses.
func checkReply(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, errNoRequest) {
		return
	}
	var re *replyError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a reply", err)
	}
	resp, rerr := http.ReadResponse(bufio.NewReader(bytes.NewReader(reply(re.status, re.text))), nil)
	if rerr != nil || resp.StatusCode != re.status {
		t.Fatalf("reply for %v does not parse: %v", err, rerr)
	}
	if strings.ContainsAny(re.text, "\r\n") {
		t.Fatalf("reply text %q is not one line", re.text)
	}
}

// FuzzResponseHead feeds bytes as an upstream's response to the response
// handling (net/http's parser, then our head and re-framed body for the
// client). It must never panic; a response net/http reads must reach the
// client as one net/http reads too, with the same status and body, no
// hop-by-hop fields, and Close when the connection is not kept.
func FuzzResponseHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n2\r\nok\r\n0\r\nX: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\nuntil the close",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
	} {
		f.Add([]byte(s), byte(0))
	}
	f.Fuzz(fuzzResponseHead)
}

// fuzzResponseHead is FuzzResponseHead's check of one input; how picks
// the request (method HEAD, HTTP/1.0, Connection: close).
func fuzzResponseHead(t *testing.T, data []byte, how byte) {
	req := &http.Request{Method: "GET", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}
	if how&1 != 0 {
		req.Method = "HEAD"
	}
	if how&2 != 0 {
		req.ProtoMinor = 0
		req.Close = true
		if how&8 != 0 {
			req.Header.Set("Connection", "keep-alive")
			req.Close = false
		}
	}
	if how&4 != 0 {
		req.Close = true
	}
	var out bytes.Buffer
	resp, err := readResponse(bufio.NewReader(bytes.NewReader(data)), &out, req)
	if err != nil {
		return
	}
	head, mode, keep := responseHead(req, resp, clientKeepAlive(req))
	out.Write(head)
	if err := relayBody(&out, resp, mode, make([]byte, chunkBufSize)); err != nil {
		var be errBody
		if !errors.As(err, &be) {
			t.Fatalf("relayBody: %v", err)
		}
		return // cut short: the client's connection is reset
	}
	sent := out.Bytes()
	br := bufio.NewReader(&out)
	var got *http.Response
	for {
		got, err = http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("the client's response does not parse: %v\n%q\nfrom %q", err, sent, data)
		}
		if got.StatusCode >= 200 {
			break
		}
	}
	if got.StatusCode != resp.StatusCode || (!keep && !got.Close) || (keep && got.Close) {
		t.Fatalf("status %d, close %v (kept %v); the upstream said %d\n%q", got.StatusCode, got.Close, keep, resp.StatusCode, sent)
	}
	for k := range got.Header {
		if hopByHop(k) && k != "Connection" {
			t.Fatalf("%s passed on:\n%q", k, sent)
		}
	}
	gotBody, err := io.ReadAll(got.Body)
	if err != nil {
		t.Fatalf("the client's body: %v\n%q", err, sent)
	}
	orig, _ := readResponse(bufio.NewReader(bytes.NewReader(data)), io.Discard, req)
	want, err := io.ReadAll(orig.Body)
	if err == nil && !bytes.Equal(gotBody, want) {
		t.Fatalf("body %q, the upstream sent %q", gotBody, want)
	}
}
