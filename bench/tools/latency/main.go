// Command latency opens TCP flows to a server that answers in one write
// (bench/tools/oneshot) and reports, as one JSON object on stdout:
//
//	-mode warm   dial until one flow gets its answer (the path is up and warm)
//	-mode seq    -n flows one after another: connect-to-first-byte percentiles
//	-mode rate   -c workers opening flows back to back for -d: flows per second
//	-mode hold   open -n flows (-c at a time), read the first byte of each,
//	             report, keep them all open for -hold, then close them
//	-mode bulk-send  one flow to oneshot -sink: write for -d, half-close,
//	             wait for the sink's count of bytes received: Gbit/s
//	-mode bulk-recv  one flow to oneshot -source: read for -d: Gbit/s
//
// With -socks host:port every flow is dialled through that SOCKS5 proxy
// (no authentication; a name in -addr goes to the proxy as a name, never
// looked up here); the SOCKS handshake counts in the flow's latency. The
// bulk modes are for the methods iperf3 cannot use (a SOCKS proxy), and for
// the others beside them, so the numbers compare like for like.
//
// A flow is: dial, send a one-line HTTP/1.0 request (unless -banner: then
// the server speaks first), read the first byte of the answer (the latency
// sample ends here), read the rest of the answer (Content-Length), close.
// The client may close first and hold TIME_WAIT: give its namespace
// net.ipv4.tcp_tw_reuse=1 and a wide ip_local_port_range for the rate mode.
// Run it inside the client's network namespace (ip netns exec).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/proxy"
)

var (
	addr        = flag.String("addr", "", "server `host:port`")
	mode        = flag.String("mode", "seq", "warm, seq, rate, hold, bulk-send or bulk-recv")
	n           = flag.Int("n", 1000, "flows to time (seq) or to hold (hold)")
	warmup      = flag.Int("warmup", 20, "untimed flows before the timed ones (seq)")
	conc        = flag.Int("c", 8, "concurrent workers (rate) or dials in flight (hold)")
	dur         = flag.Duration("d", 10*time.Second, "how long to open flows (rate) or to move data (bulk-send, bulk-recv)")
	holdFor     = flag.Duration("hold", 5*time.Second, "how long to keep the flows open after reporting (hold)")
	dialTimeout = flag.Duration("dial-timeout", 5*time.Second, "timeout of one dial (warm uses min(this, 500ms) and retries)")
	timeout     = flag.Duration("timeout", 30*time.Second, "overall limit for warm")
	rawOut      = flag.String("raw", "", "also write every latency sample (µs) to this `file`, one a line")
	banner      = flag.Bool("banner", false, "send no request: the server speaks first (oneshot -banner)")
	socksAddr   = flag.String("socks", "", "dial every flow through this SOCKS5 proxy `host:port` (no authentication)")
)

const request = "GET / HTTP/1.0\r\n\r\n"

func main() {
	flag.Parse()
	if *addr == "" {
		fail(errors.New("-addr is required"))
	}
	var (
		res any
		err error
	)
	switch *mode {
	case "warm":
		res, err = warm()
	case "seq":
		res, err = seq()
	case "rate":
		res, err = rate()
	case "hold":
		err = hold()
	case "bulk-send":
		res, err = bulkSend()
	case "bulk-recv":
		res, err = bulkRecv()
	default:
		err = fmt.Errorf("unknown -mode %q (want warm, seq, rate, hold, bulk-send or bulk-recv)", *mode)
	}
	if err != nil {
		fail(err)
	}
	if res != nil {
		emit(res)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "latency: %s: %v\n", *addr, err)
	os.Exit(1)
}

// dial connects to -addr within d, directly or through the -socks proxy.
func dial(d time.Duration) (net.Conn, error) {
	if *socksAddr == "" {
		return net.DialTimeout("tcp", *addr, d)
	}
	// The SOCKS dialer wraps the connection in a type of its own that
	// hides CloseWrite; after the handshake the bytes are the plain TCP
	// connection's (the dialer reads exactly the reply), so keep that.
	fwd := &keepConn{}
	pd, err := proxy.SOCKS5("tcp", *socksAddr, nil, fwd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := pd.(proxy.ContextDialer).DialContext(ctx, "tcp", *addr); err != nil {
		return nil, err
	}
	return fwd.c, nil
}

// keepConn dials the SOCKS proxy and keeps the connection it made.
type keepConn struct {
	d net.Dialer
	c net.Conn
}

func (k *keepConn) Dial(network, address string) (net.Conn, error) {
	return k.DialContext(context.Background(), network, address)
}

func (k *keepConn) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := k.d.DialContext(ctx, network, address)
	k.c = c
	return c, err
}

func emit(v any) {
	b, _ := json.Marshal(v)
	os.Stdout.Write(append(b, '\n'))
}

// flow opens one flow and returns the connect-to-first-byte time. If keep
// is set the connection is returned open after the first byte; otherwise it
// is read to the server's close and closed.
func flow(d time.Duration, keep bool) (time.Duration, net.Conn, error) {
	start := time.Now()
	c, err := dial(d)
	if err != nil {
		return 0, nil, err
	}
	c.SetDeadline(start.Add(d + 5*time.Second))
	if !*banner {
		if _, err := io.WriteString(c, request); err != nil {
			c.Close()
			return 0, nil, fmt.Errorf("sending the request: %w", err)
		}
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return 0, nil, fmt.Errorf("no first byte: %w", err)
	}
	took := time.Since(start)
	if keep {
		c.SetDeadline(time.Time{})
		return took, c, nil
	}
	// Read the rest of the answer, then close without waiting for the
	// server's close: a tunnel may delay that (Nagle behind the last data),
	// and it is not part of what a client waits for.
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(bytes.NewReader(b[:]), c)), nil)
	if err != nil {
		return took, nil, fmt.Errorf("reading the answer: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return took, nil, fmt.Errorf("reading the answer's body: %w", err)
	}
	return took, nil, nil
}

type warmResult struct {
	Mode     string  `json:"mode"`
	Attempts int     `json:"attempts"`
	Seconds  float64 `json:"seconds"`
}

func warm() (any, error) {
	start := time.Now()
	d := min(*dialTimeout, 500*time.Millisecond)
	var last error
	for i := 1; ; i++ {
		if _, _, err := flow(d, false); err == nil {
			return warmResult{"warm", i, time.Since(start).Seconds()}, nil
		} else {
			last = err
		}
		if time.Since(start) > *timeout {
			return nil, fmt.Errorf("no answer after %v and %d attempts; last error: %v", *timeout, i, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type stats struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Min  float64 `json:"min_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// percentiles uses the nearest-rank method.
func percentiles(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return stats{ms(rank(50)), ms(rank(90)), ms(rank(99)), ms(s[0]), ms(s[len(s)-1]), ms(sum / time.Duration(len(s)))}
}

func writeRaw(ds []time.Duration) error {
	if *rawOut == "" {
		return nil
	}
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "%d\n", d.Microseconds())
	}
	return os.WriteFile(*rawOut, []byte(b.String()), 0o644)
}

type seqResult struct {
	Mode       string `json:"mode"`
	N          int    `json:"n"`
	Errors     int    `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	stats
}

func seq() (any, error) {
	for range *warmup {
		flow(*dialTimeout, false)
	}
	ds := make([]time.Duration, 0, *n)
	res := seqResult{Mode: "seq", N: *n}
	for range *n {
		d, _, err := flow(*dialTimeout, false)
		if err != nil {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			continue
		}
		ds = append(ds, d)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("all %d flows failed; first error: %s", *n, res.FirstError)
	}
	res.stats = percentiles(ds)
	return res, writeRaw(ds)
}

type rateResult struct {
	Mode       string  `json:"mode"`
	Workers    int     `json:"workers"`
	Seconds    float64 `json:"seconds"`
	Flows      int     `json:"flows"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	PerSecond  float64 `json:"flows_per_s"`
	stats
}

func rate() (any, error) {
	var (
		mu       sync.Mutex
		all      []time.Duration
		errs     int
		firstErr string
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(*dur)
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				d, _, err := flow(*dialTimeout, false)
				if err != nil {
					mu.Lock()
					if errs++; firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond) // a failing path must not spin
					continue
				}
				mine = append(mine, d)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if len(all) == 0 {
		return nil, fmt.Errorf("no flow completed in %v; first error: %s", *dur, firstErr)
	}
	return rateResult{
		Mode: "rate", Workers: *conc, Seconds: math.Round(secs*1000) / 1000,
		Flows: len(all), Errors: errs, FirstError: firstErr,
		PerSecond: math.Round(float64(len(all))/secs*10) / 10,
		stats:     percentiles(all),
	}, nil
}

type holdResult struct {
	Mode       string  `json:"mode"`
	Wanted     int     `json:"wanted"`
	Held       int     `json:"held"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	OpenSecs   float64 `json:"open_seconds"`
}

func hold() error {
	var (
		mu       sync.Mutex
		conns    []net.Conn
		errs     int
		firstErr string
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) {
				_, c, err := flow(*dialTimeout, true)
				mu.Lock()
				if err != nil {
					if errs++; firstErr == "" {
						firstErr = err.Error()
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	emit(holdResult{"hold", *n, len(conns), errs, firstErr, math.Round(time.Since(start).Seconds()*1000) / 1000})
	time.Sleep(*holdFor)
	for _, c := range conns {
		c.Close()
	}
	if len(conns) == 0 {
		return fmt.Errorf("could not open any of %d flows; first error: %s", *n, firstErr)
	}
	return nil
}

type bulkResult struct {
	Mode    string  `json:"mode"`
	Seconds float64 `json:"seconds"`
	Bytes   int64   `json:"bytes"`
	Gbps    float64 `json:"gbps"`
}

func bulkResultOf(m string, bytes int64, took time.Duration) bulkResult {
	return bulkResult{m, math.Round(took.Seconds()*1000) / 1000, bytes, math.Round(float64(bytes)*8/took.Seconds()/1e6) / 1e3}
}

const bulkBuf = 128 << 10

// bulkSend writes to oneshot -sink for -d, half-closes, and reads the
// sink's count of the bytes it received: the time runs to that answer, so
// what sat in buffers when the writing stopped is counted as delivered only
// once it was.
func bulkSend() (any, error) {
	c, err := dial(*dialTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		return nil, fmt.Errorf("%T cannot half-close", c)
	}
	buf := make([]byte, bulkBuf)
	var sent int64
	start := time.Now()
	end := start.Add(*dur)
	c.SetDeadline(end.Add(60 * time.Second))
	for time.Now().Before(end) {
		n, err := c.Write(buf)
		sent += int64(n)
		if err != nil {
			return nil, fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	if err := cw.CloseWrite(); err != nil {
		return nil, fmt.Errorf("half-closing: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	took := time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("no count from the sink after sending %d bytes: %w", sent, err)
	}
	var got int64
	if _, err := fmt.Sscan(line, &got); err != nil {
		return nil, fmt.Errorf("the sink's answer %q: %w", line, err)
	}
	if got != sent {
		return nil, fmt.Errorf("sent %d bytes, the sink received %d", sent, got)
	}
	return bulkResultOf("bulk-send", got, took), nil
}

// bulkRecv reads what oneshot -source writes for -d, then closes.
func bulkRecv() (any, error) {
	c, err := dial(*dialTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	buf := make([]byte, bulkBuf)
	var got int64
	start := time.Now()
	c.SetReadDeadline(start.Add(*dur))
	for {
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return nil, fmt.Errorf("after %d bytes: %w", got, err)
		}
	}
	took := time.Since(start)
	if got == 0 {
		return nil, errors.New("received nothing")
	}
	return bulkResultOf("bulk-recv", got, took), nil
}
