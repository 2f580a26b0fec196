// Command oneshot is the benchmark's server that answers in one write: a
// fixed short HTTP/1.0 response, sent with a single write.
//
//	-listen  reads the request (up to its blank line), answers, closes
//	-hold    reads the request, answers, then holds the connection open until
//	         the client closes it (the idle-flow memory test)
//	-banner  answers at once without reading anything, closes: a protocol
//	         where the server speaks first, as SMTP, IMAP and POP3 do
//	-sink    reads and discards to the client's half-close, then writes the
//	         count of bytes it read as one decimal line (latency -mode
//	         bulk-send)
//	-source  writes without end until the client closes (latency -mode
//	         bulk-recv)
//
// On -listen and -banner the server closes right after its answer.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"time"
)

const response = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

func main() {
	listen := flag.String("listen", ":8080", "`address` for request, response, close")
	hold := flag.String("hold", ":8081", "`address` for request, response, held open until the client closes")
	banner := flag.String("banner", ":8082", "`address` for response at once, close")
	sink := flag.String("sink", ":8083", "`address` that reads to the half-close and answers the count of bytes")
	source := flag.String("source", ":8084", "`address` that writes until the client closes")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("oneshot: ")

	lns := map[string]net.Listener{}
	for mode, addr := range map[string]string{"listen": *listen, "hold": *hold, "banner": *banner, "sink": *sink, "source": *source} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		lns[mode] = ln
	}
	fmt.Fprintf(os.Stderr, "oneshot: request/response on %s, held on %s, banner on %s, sink on %s, source on %s\n",
		lns["listen"].Addr(), lns["hold"].Addr(), lns["banner"].Addr(), lns["sink"].Addr(), lns["source"].Addr())
	go accept(lns["sink"], sinkConn)
	go accept(lns["source"], sourceConn)
	go serve(lns["hold"], true, true)
	go serve(lns["banner"], false, false)
	serve(lns["listen"], true, false)
}

func serve(ln net.Listener, request, hold bool) {
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of file descriptors, say: report and back off, never spin.
			log.Printf("accept on %s: %v", ln.Addr(), err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			if request && !readRequest(c, br) {
				return
			}
			if _, err := c.Write([]byte(response)); err != nil {
				return
			}
			if hold {
				io.Copy(io.Discard, br)
			}
		}()
	}
}

// readRequest reads up to the request's blank line.
func readRequest(c net.Conn, br *bufio.Reader) bool {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return false
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return true
		}
	}
}

// accept hands each connection to handle, and closes it after.
func accept(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("accept on %s: %v", ln.Addr(), err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// sinkConn reads to EOF and answers the count of bytes read. (Its own
// loop: io.Discard would read 8 KiB at a time.)
func sinkConn(c net.Conn) {
	buf := make([]byte, 128<<10)
	var total int64
	for {
		n, err := c.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	c.Write([]byte(strconv.FormatInt(total, 10) + "\n"))
}

// sourceConn writes until the write fails (the client closed).
func sourceConn(c net.Conn) {
	buf := make([]byte, 128<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}
