package demo

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// The internal host's services.
const (
	portWeb     = 80
	portMail    = 25 // speaks first, as SMTP does
	portTelnet  = 23 // listening, but a rule blocks it
	downloadLen = 8 << 20
	page        = "<!doctype html><title>internal</title><h1>Hello from the internal host</h1>\n"
	banner      = "220 internal.demo ESMTP shunt-demo ready"
)

// download is the download's content: the same bytes on both sides, so the
// client checks the sha256 of what it got against its own.
func download() []byte {
	b := make([]byte, downloadLen)
	rand.NewChaCha8([32]byte{'d', 'e', 'm', 'o'}).Read(b)
	return b
}

func downloadSum() [32]byte { return sha256.Sum256(download()) }

// Node runs a hidden helper role of the demo inside a namespace (shunt
// demo-node ROLE): "services" serves the internal host's web page,
// download, mail-like and telnet-like services until SIGTERM.
func Node(args []string, stderr io.Writer) int {
	if len(args) != 1 || args[0] != "services" {
		fmt.Fprintln(stderr, "usage: shunt demo-node services")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	data := download()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, page)
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		// Paced to about 5 MiB/s, so that shunt status has a flow to
		// show while it runs.
		for b := data; len(b) > 0; {
			n := min(len(b), 256<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return
			}
			b = b[n:]
			time.Sleep(50 * time.Millisecond)
		}
	})
	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", fmt.Sprintf(":%d", port))
	}
	web, err := listen(portWeb)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(web)
	for _, p := range []struct {
		port int
		h    func(net.Conn)
	}{
		{portMail, func(c net.Conn) {
			fmt.Fprintf(c, "%s\r\n", banner)
			r := bufio.NewReader(c)
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if len(l) >= 4 && (l[:4] == "QUIT" || l[:4] == "quit") {
					io.WriteString(c, "221 bye\r\n")
					return
				}
				io.WriteString(c, "250 ok\r\n")
			}
		}},
		{portTelnet, func(c net.Conn) { io.WriteString(c, "you should not see this: the rule blocks it\r\n") }},
	} {
		ln, err := listen(p.port)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(time.Minute))
					p.h(c)
				}()
			}
		}()
	}
	fmt.Fprintln(stderr, "services ready")
	<-ctx.Done()
	srv.Close()
	return 0
}
