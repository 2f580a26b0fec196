//go:build linux

package e2e

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/router"
)

// Memory: flows whose applications stop reading must not take shunt's
// memory with them. Measured with a build without the race detector,
// whose shadow memory would say nothing about what users run.

const (
	portFirehose = 9005
	// sshWindow is what one stalled tunnelled flow holds at least: the
	// SSH channel's window (x/crypto/ssh's channelWindowSize), which the
	// server fills and shunt buffers until the application reads.
	sshWindow = 2 << 20
	// rssBase is shunt's memory besides the budget: the runtime, gVisor's
	// stack and the binary (about 30 MiB at rest); the data that arrives
	// before the sweeps (every 250 ms; a write blocked 500 ms is a stall)
	// find a flow stalled: the flows opened within ~1 s, ~3 MiB each,
	// some 100 MiB here; the flows' own state (goroutines, endpoints,
	// channels); and the garbage the collector lets pile up before it
	// runs (GOGC: up to as much again as is live). Generous: the test
	// asserts a bound, not a figure; without the budget the same flows
	// hold 300 x ~3 MiB.
	rssBase = 384 << 20
)

// plainShunt is shunt built without the race detector, once for the
// package (in TestMain's directory, removed with it).
var plainShunt struct {
	once sync.Once
	path string
	err  error
}

func plainShuntBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("SHUNT_MEASURE_BIN"); bin != "" {
		return bin
	}
	plainShunt.once.Do(func() {
		plainShunt.path = filepath.Join(filepath.Dir(shuntBin), "shunt-plain")
		out, err := exec.Command("go", "build", "-o", plainShunt.path, "../cmd/shunt").CombinedOutput()
		if err != nil {
			plainShunt.err = fmt.Errorf("build shunt without -race: %v\n%s", err, out)
		}
	})
	if plainShunt.err != nil {
		t.Fatal(plainShunt.err)
	}
	return plainShunt.path
}

// procMemory is a process's resident memory now and at its peak
// (/proc/PID/status VmRSS and VmHWM), in bytes.
func procMemory(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	rss, hwm, err := readProcMemory(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss, hwm
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// firehoseOn serves on addr a stream of random data that never ends: the
// far side of a flow that sends as fast as it may.
func firehoseOn(t *testing.T, host *ns, addr string) {
	t.Helper()
	chunk := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{5}).Read(chunk)
	host.serve(t, addr, func(c net.Conn) {
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
}

// dialMany opens n flows to addr from the namespace, a few at a time.
func dialMany(t *testing.T, client *ns, n int, addr string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conns[i], errs[i] = client.dial(ctx, addr)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("opening %d flows to %s: %v", n, addr, err)
	}
	return conns
}

// closedByPeer tells, without reading, whether the kernel has closed the
// connection (TCP_INFO's state is CLOSE: a reset arrived).
func closedByPeer(c net.Conn) bool {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.SOL_TCP, unix.TCP_INFO); err == nil {
			closed = info.State == 7 // TCP_CLOSE
		}
	})
	return closed
}

// readOutcome reads c until it fails or limit bytes came: "reset", "eof",
// "open" (limit reached or still waiting at the deadline), or the error.
func readOutcome(c net.Conn, limit int64, wait time.Duration) string {
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := io.Copy(io.Discard, io.LimitReader(c, limit))
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case err == nil && n < limit:
		return "eof"
	case err == nil, errors.As(err, &ne) && ne.Timeout():
		return "open"
	}
	return err.Error()
}

// downloadSum fetches url from the namespace and returns its sha256.
func downloadSum(client *ns, url string) ([32]byte, int64, error) {
	var sum [32]byte
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return client.dial(ctx, addr) }}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return sum, 0, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	copy(sum[:], h.Sum(nil))
	return sum, n, err
}

// memoryTopology is the usual three hosts with the services, a firehose
// on the internal host, and an sshd allowed descriptors for many channels.
func memoryTopology(t *testing.T) (*topology, *sshd, *services) {
	t.Helper()
	prerequisites(t, "prlimit")
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	run(t, "prlimit", "--pid", strconv.Itoa(sd.cmd.Process.Pid), "--nofile=16384:16384")
	svc := startServices(t, topo.internal)
	firehoseOn(t, topo.internal, fmt.Sprintf("[::]:%d", portFirehose))
	return topo, sd, svc
}

// With flow_memory set small, flows whose applications never read while
// their far sides send without pause: shunt resets the stalled ones once
// their buffered data passes the budget (their applications see a reset),
// a flow that reads meanwhile gets all its data, and shunt's resident
// memory stays within the budget and a fixed base.
func TestMemoryBudget(t *testing.T) {
	topo, sd, svc := memoryTopology(t)
	const budget = 64 << 20
	const stalledFlows = 300
	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, internalRules), "level: debug", "level: info", 1) +
		fmt.Sprintf("flow_memory: %dMiB\n", budget>>20)
	sh := startShuntBin(t, topo, plainShuntBin(t), cfg)
	pid := sh.cmd.Process.Pid
	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, strconv.Itoa(portEcho)), []byte("logged in"))
	rest, _ := procMemory(t, pid)

	// Applications that stop reading one after another, not all in the
	// same instant: 10 every 250 ms.
	start := time.Now()
	var stalled []net.Conn
	for len(stalled) < stalledFlows {
		stalled = append(stalled, dialMany(t, topo.client, 10, net.JoinHostPort(internalAddr, strconv.Itoa(portFirehose)))...)
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d flows that never read opened in %v", stalledFlows, time.Since(start).Round(time.Millisecond))

	// A flow that reads, while the others fill their buffers.
	sum, n, err := downloadSum(topo.client, fmt.Sprintf("http://%s:%d/", internalAddr, portDownload))
	if err != nil || sum != svc.downloadSum {
		t.Fatalf("a download beside %d stalled flows: %d bytes, %v, sha256 match %v", stalledFlows, n, err, sum == svc.downloadSum)
	}
	t.Logf("a %s download beside them: sha256 ok after %v", mib(n), time.Since(start).Round(time.Millisecond))

	// Each surviving stalled flow holds at least the SSH window, so at
	// most budget/window of them fit.
	fit := budget / sshWindow
	var resetSeen int
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		resetSeen = 0
		for _, c := range stalled {
			if closedByPeer(c) {
				resetSeen++
			}
		}
		if resetSeen >= stalledFlows-fit {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d of %d stalled flows reset by shunt after %v (at most %d fit the %s budget)", resetSeen, stalledFlows, time.Since(start).Round(time.Millisecond), fit, mib(budget))
	_, hwm := procMemory(t, pid)

	// What the applications see: a reset, or data for those still open.
	outcomes := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range stalled {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := readOutcome(c, 4<<20, 5*time.Second)
			mu.Lock()
			outcomes[o]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("the stalled flows' applications, reading at last: %v", outcomes)
	if outcomes["reset"] < stalledFlows-fit {
		t.Errorf("%d of %d stalled flows were reset, want at least %d (at most %d fit the budget): %v\n%s",
			outcomes["reset"], stalledFlows, stalledFlows-fit, fit, outcomes, tail(sh.log.String(), 30))
	}
	if outcomes["reset"]+outcomes["open"] != stalledFlows {
		t.Errorf("stalled flows ended otherwise than by a reset: %v", outcomes)
	}
	if log := sh.log.String(); !strings.Contains(log, "over the flow memory budget") {
		t.Errorf("shunt did not warn that it reset flows over the budget:\n%s", tail(log, 30))
	}
	// Stalled flows are reset at once only past router.UrgentOver times
	// the budget (below it they wait router.DefaultResetAfter, so as not
	// to reset slow readers under heavy load): that bounds the peak.
	bound := int64(router.UrgentOver*budget + rssBase)
	t.Logf("shunt's RSS: %s at rest, peak %s with %d stalled flows; bound %s (%d times the budget and %s)", mib(rest), mib(hwm), stalledFlows, mib(bound), router.UrgentOver, mib(rssBase))
	if hwm > bound {
		t.Errorf("shunt's peak RSS %s is above %s (%d times the %s budget and a %s base)", mib(hwm), mib(bound), router.UrgentOver, mib(budget), mib(rssBase))
	}

	// The flows closed: the memory goes back to the system.
	for _, c := range stalled {
		c.Close()
	}
	closed := time.Now()
	for _, after := range []time.Duration{2 * time.Second, 5 * time.Second} {
		time.Sleep(time.Until(closed.Add(after)))
		rss, _ := procMemory(t, pid)
		t.Logf("shunt's RSS %v after the flows closed: %s", after, mib(rss))
	}
	// A flow works after all that.
	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, strconv.Itoa(portEcho)), []byte("after the stalled flows"))
}

// TestMeasureMemory measures shunt's RSS with many stalled flows or many
// busy ones, and after they close; it only logs the figures (it is a
// measurement, not a test), and runs only with SHUNT_MEASURE=1.
// SHUNT_MEASURE_FLOWS (default 300), SHUNT_MEASURE_MODE (stalled or busy),
// SHUNT_MEASURE_HOLD (seconds the flows are held, default 40),
// SHUNT_MEASURE_BUDGET (a flow_memory value; default: none written) and
// SHUNT_MEASURE_BIN (another shunt binary, e.g. one from before a change)
// choose what.
func TestMeasureMemory(t *testing.T) {
	if os.Getenv("SHUNT_MEASURE") != "1" {
		t.Skip("a measurement: set SHUNT_MEASURE=1 to run it")
	}
	flows := 300
	if v := os.Getenv("SHUNT_MEASURE_FLOWS"); v != "" {
		flows, _ = strconv.Atoi(v)
	}
	mode := cmp.Or(os.Getenv("SHUNT_MEASURE_MODE"), "stalled")
	topo, sd, _ := memoryTopology(t)
	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, internalRules), "level: debug", "level: info", 1)
	if b := os.Getenv("SHUNT_MEASURE_BUDGET"); b != "" {
		cfg += "flow_memory: " + b + "\n"
	}
	sh := startShuntBin(t, topo, plainShuntBin(t), cfg)
	pid := sh.cmd.Process.Pid
	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, strconv.Itoa(portEcho)), []byte("logged in"))
	rest, _ := procMemory(t, pid)
	conns := dialMany(t, topo.client, flows, net.JoinHostPort(internalAddr, strconv.Itoa(portFirehose)))
	var read sync.WaitGroup
	var received, resets int64
	var mu sync.Mutex
	if mode == "busy" {
		for _, c := range conns {
			read.Add(1)
			go func() {
				defer read.Done()
				n, err := io.Copy(io.Discard, c)
				mu.Lock()
				received += n
				if errors.Is(err, syscall.ECONNRESET) {
					resets++
				}
				mu.Unlock()
			}()
		}
	}
	hold := 40
	if v := os.Getenv("SHUNT_MEASURE_HOLD"); v != "" {
		hold, _ = strconv.Atoi(v)
	}
	var peak int64
	for i := range hold {
		time.Sleep(time.Second)
		rss, _ := procMemory(t, pid)
		peak = max(peak, rss)
		if i%5 == 4 {
			t.Logf("%d %s flows, %d s: RSS %s", flows, mode, i+1, mib(rss))
		}
	}
	reset := 0
	for _, c := range conns {
		if closedByPeer(c) {
			reset++
		}
	}
	_, hwm := procMemory(t, pid)
	for _, c := range conns {
		c.Close()
	}
	read.Wait()
	closed := time.Now()
	t.Logf("%d %s flows (flow_memory %q): RSS at rest %s, peak sampled %s, VmHWM %s; reset by shunt: %d (busy readers saw %d resets, %s received)",
		flows, mode, os.Getenv("SHUNT_MEASURE_BUDGET"), mib(rest), mib(peak), mib(hwm), reset, resets, mib(received))
	for _, after := range []time.Duration{2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, 60 * time.Second} {
		time.Sleep(time.Until(closed.Add(after)))
		rss, _ := procMemory(t, pid)
		t.Logf("RSS %v after the flows closed: %s", after, mib(rss))
	}
}

// TestMeasureIdle breaks down shunt's resident memory at rest, after one
// flow, as bench/run's idle row measures it: RSS by mapping (the binary's
// pages, the anonymous heap and stacks) and the Go runtime's own account
// (the heap profile's MemStats). It only logs the figures, and runs only
// with SHUNT_MEASURE=1; SHUNT_MEASURE_BIN picks another binary,
// SHUNT_MEASURE_ENV adds to its environment (GODEBUG=memprofilerate=1
// for an exact heap profile) and SHUNT_MEASURE_OUT names a directory for
// the heap profile (go tool pprof) and the goroutines;
// SHUNT_MEASURE_DOWNLOADS=N then downloads 64 MiB N times (the reverse
// direction) and logs shunt's CPU and the collections per GB.
func TestMeasureIdle(t *testing.T) {
	if os.Getenv("SHUNT_MEASURE") != "1" {
		t.Skip("a measurement: set SHUNT_MEASURE=1 to run it")
	}
	topo := newTopology(t)
	sd := startSSHD(t, topo.gateway)
	startServices(t, topo.internal)
	cfg := strings.Replace(shuntConfig(topo, sd, sd.knownHosts, internalRules), "level: debug", "level: info", 1) +
		"dns:\n  mode: resolv.conf\n"
	bin := plainShuntBin(t)
	env := strings.Fields(os.Getenv("SHUNT_MEASURE_ENV"))
	sh := startShuntWith(t, topo, cfg, shuntOptions{args: []string{"--pprof"}, bin: bin, env: env})
	pid := sh.cmd.Process.Pid
	rss, _ := procMemory(t, pid)
	t.Logf("up, before any flow: RSS %.1f MiB", float64(rss)/(1<<20))
	echoCheck(t, topo.client, net.JoinHostPort(internalAddr, strconv.Itoa(portEcho)), []byte("idle"))
	for i := range 3 {
		time.Sleep(2 * time.Second)
		rss, hwm := procMemory(t, pid)
		t.Logf("sample %d: RSS %.1f MiB (peak %.1f MiB)", i+1, float64(rss)/(1<<20), float64(hwm)/(1<<20))
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	byMap := map[string]int64{}
	name := ""
	for line := range strings.SplitSeq(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = "anonymous"
			if len(f) >= 6 {
				name = f[5]
			}
			if name == bin {
				name = "binary " + f[1] // by permission: text r-xp, data rw-p
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			byMap[name] += kb
		}
	}
	for k, v := range byMap {
		if v > 0 {
			t.Logf("RSS %-20s %6d KiB", k, v)
		}
	}
	heap, err := controlGet(sh, "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	if _, stats, ok := strings.Cut(heap, "# runtime.MemStats"); ok {
		for line := range strings.SplitSeq(stats, "\n") {
			for _, k := range []string{"HeapAlloc", "HeapSys", "HeapIdle", "HeapInuse", "HeapReleased", "Stack", "MSpan", "MCache", "BuckHashSys", "GCSys", "OtherSys", "NextGC", "NumGC", "Sys ="} {
				if strings.HasPrefix(line, "# "+k) {
					t.Log(line)
				}
			}
		}
	}
	if n, err := goroutines(sh); err == nil {
		t.Logf("goroutines: %d", n)
	}
	if v := os.Getenv("SHUNT_MEASURE_DOWNLOADS"); v != "" {
		measureDownloads(t, sh, topo, v)
	}
	if dir := os.Getenv("SHUNT_MEASURE_OUT"); dir != "" {
		prof, err := controlGet(sh, "/debug/pprof/heap")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "heap.pprof"), []byte(prof), 0o644); err != nil {
			t.Fatal(err)
		}
		gr, _ := controlGet(sh, "/debug/pprof/goroutine?debug=1")
		os.WriteFile(filepath.Join(dir, "goroutines.txt"), []byte(gr), 0o644)
	}
}

// measureDownloads downloads the internal host's 64 MiB n times through
// sh and logs what it cost shunt: CPU seconds (utime+stime) and garbage
// collections per GB received.
func measureDownloads(t *testing.T, sh *shunt, topo *topology, n string) {
	t.Helper()
	count, err := strconv.Atoi(n)
	if err != nil {
		t.Fatalf("SHUNT_MEASURE_DOWNLOADS=%q: %v", n, err)
	}
	pid := sh.cmd.Process.Pid
	cpu := func() float64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		return (ut + st) / 100 // USER_HZ
	}
	gcs := func() int {
		heap, err := controlGet(sh, "/debug/pprof/heap?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		_, after, _ := strings.Cut(heap, "# NumGC = ")
		v, _ := strconv.Atoi(strings.Fields(after)[0])
		return v
	}
	c0, g0, start := cpu(), gcs(), time.Now()
	var bytes int64
	for range count {
		_, got, err := downloadSum(topo.client, "http://"+net.JoinHostPort(internalAddr, strconv.Itoa(portDownload))+"/blob")
		if err != nil {
			t.Fatal(err)
		}
		bytes += got
	}
	el := time.Since(start)
	gb := float64(bytes) / 1e9
	t.Logf("%d downloads, %.2f GB in %v (%.2f Gbit/s): shunt's CPU %.2f s/GB, %.0f collections/GB",
		count, gb, el.Round(time.Millisecond), gb*8/el.Seconds(), (cpu()-c0)/gb, float64(gcs()-g0)/gb)
}
