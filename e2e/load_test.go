//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The load test's size: the figure, 1,000 flows open at once, each
// 1 MiB of random data each way.
const (
	loadFlows = 1000
	loadBytes = 1 << 20
	// loadDialsInFlight bounds the client's connects under way: below the
	// router's share of set-ups for one destination (512) and the
	// profile's channel opens in flight (640), which refuse a burst beyond
	// them by design (TestLimitBlackholedDestination). Transfers start as
	// soon as a flow is up, so set-ups meet a busy data path.
	loadDialsInFlight = 256
	portLoad          = 9005
)

// 1,000 flows through one SSH connection to Debian's sshd, each sending
// 1 MiB of random data and receiving 1 MiB of other random data from a
// server on the internal host; each end checks the sha256 of what it got
// against the one the sender computed. All stay open until the last has
// finished, so the 1,000 are open at once. Then, with every flow closed,
// shunt's goroutines and descriptors are back where they were.
func TestLoadThousandFlows(t *testing.T) {
	prerequisites(t, "prlimit") // util-linux
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	// The SSH connection's sshd process holds a socket per channel, and
	// children of this process get the soft limit it started with (1,024
	// on many systems): too few for 1,000 channels and sshd's own.
	run(t, "prlimit", "--pid", strconv.Itoa(sd.cmd.Process.Pid), "--nofile=16384:16384")
	far := serveExchange(t, topo.internal, fmt.Sprintf("[::]:%d", portLoad), loadBytes)
	addr := net.JoinHostPort(internalAddr, strconv.Itoa(portLoad))

	// At info: a debug line per flow only slows shunt down. flow_memory
	// is its largest default (an eighth of the machine's memory, at most
	// 1 GiB) written out, so that the test does not depend on the
	// machine's memory: 1,000 busy flows stay under it. The metrics
	// endpoint says what the budget saw.
	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, internalRules), "level: debug", "level: info", 1) +
		"flow_memory: 1GiB\nmetrics:\n  listen: 127.0.0.1:9559\n"
	sh := startShuntWith(t, topo, cfg, shuntOptions{args: []string{"--pprof"}, bin: plainShuntBin(t)})
	// The baseline: logged in, one flow done and closed.
	c, err := dialExchange(topo.client, addr, loadBytes, nil)
	if err != nil {
		t.Fatalf("the first flow: %v", err)
	}
	c.Close()
	waitFlows(t, sh, topo, 0)
	far.reset()
	before := quietSample(t, sh, 0, 0)
	t.Logf("before: %v", before)

	peakBuffered, stopBudget := watchBudget(topo)
	defer stopBudget()
	start := time.Now()
	var (
		wg       sync.WaitGroup
		release  = make(chan struct{}) // the clients close their flows
		allDone  = make(chan struct{})
		dials    = make(chan struct{}, loadDialsInFlight)
		mu       sync.Mutex
		errs     []error
		connects []time.Duration
	)
	for i := range loadFlows {
		wg.Add(1)
		go func() {
			dials <- struct{}{}
			begin := time.Now()
			c, err := dialExchange(topo.client, addr, loadBytes, func() {
				<-dials
				mu.Lock()
				connects = append(connects, time.Since(begin))
				mu.Unlock()
			})
			mu.Lock()
			if err != nil {
				errs = append(errs, fmt.Errorf("flow %d: %w", i, err))
			}
			mu.Unlock()
			// Done before the wait, so a flow that failed does not
			// hold up the rest.
			wg.Done()
			if c != nil {
				<-release
				c.Close()
			}
		}()
	}
	closeAll := sync.OnceFunc(func() { close(release) })
	defer closeAll() // on a failure below too
	go func() { wg.Wait(); close(allDone) }()
	// A client is done once it has sent and received all; the server
	// may still be receiving what the client's kernel holds.
	select {
	case <-allDone:
	case <-time.After(5 * time.Minute):
		t.Fatalf("after 5 minutes some of %d flows have not finished at the client", loadFlows)
	}
	for deadline := time.Now().Add(time.Minute); far.finished() < loadFlows; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("a minute after the clients finished, the server has finished %d of %d exchanges", far.finished(), loadFlows)
			break
		}
	}
	took := time.Since(start)
	stopBudget()
	if m, err := loadMetrics(topo); err != nil {
		t.Errorf("shunt's metrics: %v", err)
	} else {
		t.Logf("memory budget: the estimate of buffered data peaked at %d MiB (sampled), %v flows reset over it",
			peakBuffered.Load()>>20, m["shunt_flows_memory_reset_total"])
		if n := m["shunt_flows_memory_reset_total"]; n != 0 {
			t.Errorf("shunt reset %v busy flows over the memory budget (flow_memory 1 GiB): none of them stopped reading", n)
		}
	}
	// Every transfer is done, and (but for failed ones) every flow is
	// still open: the peak.
	open := len(sh.status(t, topo).Flows)
	// Drops on the TUN's queue (TX: towards shunt) tell a slow reader.
	t.Logf("TUN: %s", topo.client.exec(t, "ip", "-s", "link", "show", "dev", topo.tunName()))
	peak := sample(t, sh)
	t.Logf("%d flows, %d MiB each way: %v (%.0f MiB/s both ways together); at the peak %d flows open, %v",
		loadFlows, loadBytes>>20, took.Round(time.Millisecond), float64(2*loadFlows*loadBytes>>20)/took.Seconds(), open, peak)
	t.Logf("verified by sha256: %d flows at the client, %d at the server, %d MiB in all", loadFlows-len(errs), far.verified(), (loadFlows-len(errs)+far.verified())*loadBytes>>20)
	slices.Sort(connects)
	if len(connects) > 0 {
		t.Logf("connect times: median %v, 99th percentile %v, max %v", connects[len(connects)/2].Round(time.Millisecond),
			connects[len(connects)*99/100].Round(time.Millisecond), connects[len(connects)-1].Round(time.Millisecond))
	}
	for _, err := range errs[:min(len(errs), 10)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Errorf("%d of %d flows failed at the client", len(errs), loadFlows)
	}
	far.check(t, loadFlows)
	if len(errs) == 0 && open != loadFlows {
		t.Errorf("%d flows open at shunt when all had finished their transfers, want %d", open, loadFlows)
	}

	// The clients close theirs; the server closes when it reads the end.
	closeAll()
	waitFlows(t, sh, topo, 0)
	after := quietSample(t, sh, before.goroutines, before.fds)
	t.Logf("after: %v; peak RSS (VmHWM) %d MiB", after, after.hwm>>20)
	if after.goroutines > before.goroutines || after.fds > before.fds {
		t.Errorf("shunt leaked: %d goroutines and %d descriptors before the flows, %d and %d after they closed\n%s",
			before.goroutines, before.fds, after.goroutines, after.fds, goroutineDump(sh))
	}
}

// fetchMetrics is the text of shunt's metrics endpoint, configured as
// metrics.listen 127.0.0.1:9559 in the client.
func fetchMetrics(topo *topology) ([]byte, error) {
	out, err := topo.client.command("curl", "-sS", "--max-time", "20", "http://127.0.0.1:9559/metrics").Output()
	if err != nil {
		return nil, fmt.Errorf("curl /metrics: %w", err)
	}
	return out, nil
}

// loadMetrics is fetchMetrics's series without labels.
func loadMetrics(topo *topology) (map[string]float64, error) {
	out, err := fetchMetrics(topo)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for line := range strings.SplitSeq(string(out), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] = v
		}
	}
	return m, nil
}

// watchBudget samples the memory budget's estimate of buffered data every
// half second until stop is called, keeping its peak.
func watchBudget(topo *topology) (peak *atomic.Int64, stop func()) {
	peak = new(atomic.Int64)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			if m, err := loadMetrics(topo); err == nil {
				if b := int64(m["shunt_flow_memory_buffered_bytes"]); b > peak.Load() {
					peak.Store(b)
				}
			}
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return peak, sync.OnceFunc(func() { close(done); <-finished })
}

// exchangeServer serves exchange on every connection and counts the
// outcomes; after the exchange it holds the connection until the client
// closes it.
type exchangeServer struct {
	mu   sync.Mutex
	ok   int
	errs []error
}

func serveExchange(t *testing.T, host *ns, addr string, size int) *exchangeServer {
	t.Helper()
	s := &exchangeServer{}
	host.serve(t, addr, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		err := exchange(c, size)
		s.mu.Lock()
		if err != nil {
			s.errs = append(s.errs, err)
		} else {
			s.ok++
		}
		s.mu.Unlock()
		// Nothing more comes: the client's close ends the flow.
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("after the exchange: %d more bytes, %v", n, err))
			s.mu.Unlock()
		}
	})
	return s
}

func (s *exchangeServer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ok, s.errs = 0, nil
}

func (s *exchangeServer) verified() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok
}

func (s *exchangeServer) finished() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok + len(s.errs)
}

// check: n exchanges verified at the far end, none failed.
func (s *exchangeServer) check(t *testing.T, n int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs[:min(len(s.errs), 10)] {
		t.Errorf("at the server: %v", err)
	}
	if s.ok != n || len(s.errs) != 0 {
		t.Errorf("the server verified %d exchanges and saw %d fail, want %d verified", s.ok, len(s.errs), n)
	}
}

// dialExchange dials addr from the client and runs exchange; dialled, if
// set, is called once the connect has ended. It returns the connection,
// still open, if the exchange succeeded.
func dialExchange(client *ns, addr string, size int, dialled func()) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.dial(ctx, addr)
	if dialled != nil {
		dialled()
	}
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if err := exchange(c, size); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// exchange sends size bytes of random data and their sha256 while it
// receives as many from the peer, which does the same, and checks the
// sha256 of what came against the one that followed it.
func exchange(c net.Conn, size int) error {
	errc := make(chan error, 2)
	go func() { errc <- sendRandom(c, size) }()
	go func() { errc <- receiveChecked(c, size) }()
	var errs []error
	for range 2 {
		if err := <-errc; err != nil {
			c.Close() // ends the other half: the first error is the cause
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sendRandom(w io.Writer, size int) error {
	var seed [32]byte
	crand.Read(seed[:])
	rng := rand.NewChaCha8(seed)
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for left := size; left > 0; {
		b := buf[:min(left, len(buf))]
		rng.Read(b)
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("sending: %w after %d of %d bytes", err, size-left, size)
		}
		left -= len(b)
	}
	if _, err := w.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("sending the sha256: %w", err)
	}
	return nil
}

func receiveChecked(r io.Reader, size int) error {
	h := sha256.New()
	if n, err := io.CopyN(h, r, int64(size)); err != nil {
		return fmt.Errorf("received %d of %d bytes: %w", n, size, err)
	}
	var sum [sha256.Size]byte
	if _, err := io.ReadFull(r, sum[:]); err != nil {
		return fmt.Errorf("reading the sender's sha256: %w", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum[:]) {
		return fmt.Errorf("the %d bytes received have sha256 %x, the sender's is %x", size, got, sum)
	}
	return nil
}

// processSample is what shunt's process holds at one moment.
type processSample struct {
	goroutines int
	fds        int
	rss, hwm   int64 // VmRSS, VmHWM in bytes
}

func (p processSample) String() string {
	return fmt.Sprintf("%d goroutines, %d descriptors, RSS %d MiB (high-water %d MiB)", p.goroutines, p.fds, p.rss>>20, p.hwm>>20)
}

// sample reads shunt's descriptors and memory from /proc and its
// goroutines from the profile on the control socket (--pprof).
func sample(t *testing.T, sh *shunt) processSample {
	t.Helper()
	var p processSample
	var err error
	pid := sh.cmd.Process.Pid // ip netns exec execs shunt: the same process
	if p.fds, err = procFDs(pid); err != nil {
		t.Fatal(err)
	}
	if p.rss, p.hwm, err = readProcMemory(pid); err != nil {
		t.Fatal(err)
	}
	if p.goroutines, err = goroutines(sh); err != nil {
		t.Fatal(err)
	}
	return p
}

// quietSample waits for shunt's goroutines and descriptors to fall to at
// most the given numbers (0: for 3 s of quiet), for up to 30 s, and
// samples.
func quietSample(t *testing.T, sh *shunt, goroutines, fds int) processSample {
	t.Helper()
	time.Sleep(3 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := sample(t, sh)
		if goroutines == 0 || (p.goroutines <= goroutines && p.fds <= fds) || time.Now().After(deadline) {
			return p
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func procFDs(pid int) (int, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(entries), err
}

// readProcMemory is VmRSS and VmHWM from /proc/PID/status, in bytes.
func readProcMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %v", pid, k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// controlGet GETs path on shunt's control socket.
func controlGet(sh *shunt, path string) (string, error) {
	c := &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sh.socket)
		}},
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://shunt" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), err
}

// goroutines is the count in shunt's goroutine profile.
func goroutines(sh *shunt) (int, error) {
	out, err := controlGet(sh, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, err
	}
	first, _, _ := strings.Cut(out, "\n")
	n, ok := strings.CutPrefix(first, "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile starts with %q", first)
	}
	return strconv.Atoi(n)
}

// goroutineDump is shunt's goroutines, grouped by stack, for a failure.
func goroutineDump(sh *shunt) string {
	out, err := controlGet(sh, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		return "goroutine profile: " + err.Error()
	}
	return out
}

// waitFlows waits until shunt holds n flows.
func waitFlows(t *testing.T, sh *shunt, topo *topology, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := len(sh.status(t, topo).Flows)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shunt holds %d flows after 60 s, want %d", got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
