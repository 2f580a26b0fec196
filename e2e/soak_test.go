//go:build linux

package e2e

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// soakEnv sets the soak's duration (a Go duration: SHUNT_SOAK=10m is the
// bench setting, bench/run --soak); CI runs soakDefault.
const (
	soakEnv     = "SHUNT_SOAK"
	soakDefault = 60 * time.Second
	// soakWorkers open, use and close flows one after another.
	soakWorkers = 32
	soakBytes   = 64 << 10 // each way, per flow
	soakEvery   = 2 * time.Second
)

// Flows open and close without a pause for a while (60 s in CI,
// SHUNT_SOAK as the bench's setting), each 64 KiB of random data each way
// with its sha256 checked; shunt's RSS and descriptors are sampled every
// 2 s and must not grow from the first third of the run to the last. The
// bound is generous (half again and 64 MiB for memory, 16 descriptors):
// it catches a leak of a descriptor or buffer per flow, which over tens
// of thousands of flows is far beyond it, not the heap's ups and downs.
func TestSoak(t *testing.T) {
	prerequisites(t)
	t.Parallel() // its own namespaces (random names), sshd and shunt
	dur := soakDefault
	if v := os.Getenv(soakEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration such as 10m", soakEnv, v)
		}
		dur = d
	}
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	// The client closes first, so its ports wait in TIME-WAIT; and so do
	// sshd's on the gateway, whose every connect goes to the one server
	// address: above 470 flows a second, the gateway's 28,232 ephemeral
	// ports (32768-60999) are all in TIME-WAIT within a minute, and
	// sshd's connects fail ("open failed": EADDRNOTAVAIL). New connects
	// in both namespaces reuse them, from a wider range, or a soak on a
	// fast machine runs out of ports.
	for _, host := range []*ns{topo.client, topo.gateway} {
		host.exec(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse && echo '1024 65535' > /proc/sys/net/ipv4/ip_local_port_range")
	}
	sd := startSSHD(t, topo.gateway)
	far := serveExchange(t, topo.internal, fmt.Sprintf("[::]:%d", portLoad), soakBytes)
	addr := net.JoinHostPort(internalAddr, strconv.Itoa(portLoad))
	sh := startShuntWith(t, topo, strings.Replace(shuntConfig(topo, sd, sd.knownHosts, internalRules), "level: debug", "level: info", 1),
		shuntOptions{bin: plainShuntBin(t)})

	var (
		completed atomic.Int64
		mu        sync.Mutex
		errs      []error
		stop      = make(chan struct{})
		wg        sync.WaitGroup
	)
	for range soakWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialExchange(topo.client, addr, soakBytes, nil)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				c.Close()
				completed.Add(1)
			}
		}()
	}
	var samples []processSample
	pid := sh.cmd.Process.Pid
	start := time.Now()
	for tick := time.NewTicker(soakEvery); time.Since(start) < dur; {
		<-tick.C
		var p processSample
		var err error
		if p.fds, err = procFDs(pid); err == nil {
			p.rss, p.hwm, err = readProcMemory(pid)
		}
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("sampling shunt after %v: %v", time.Since(start).Round(time.Second), err)
		}
		samples = append(samples, p)
	}
	close(stop)
	wg.Wait()
	took := time.Since(start)

	rss := func(s []processSample) []int64 {
		out := make([]int64, len(s))
		for i, p := range s {
			out[i] = p.rss
		}
		return out
	}
	fds := func(s []processSample) []int {
		out := make([]int, len(s))
		for i, p := range s {
			out[i] = p.fds
		}
		return out
	}
	n := completed.Load()
	t.Logf("%v: %d flows (%.0f a second, %d at once), %d failed; %d samples: RSS %d-%d MiB, descriptors %d-%d",
		took.Round(time.Second), n, float64(n)/took.Seconds(), soakWorkers, len(errs), len(samples),
		slices.Min(rss(samples))>>20, slices.Max(rss(samples))>>20, slices.Min(fds(samples)), slices.Max(fds(samples)))
	for _, err := range errs[:min(len(errs), 10)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Errorf("%d of %d flows failed", len(errs), n+int64(len(errs)))
	}
	if len(samples) < 6 {
		t.Fatalf("%d samples in %v: too few to compare the first third with the last", len(samples), took)
	}
	third := len(samples) / 3
	first, last := samples[:third], samples[len(samples)-third:]
	t.Logf("first third: RSS up to %d MiB, descriptors up to %d; last third: %d MiB, %d",
		slices.Max(rss(first))>>20, slices.Max(fds(first)), slices.Max(rss(last))>>20, slices.Max(fds(last)))
	if a, b := slices.Max(rss(first)), slices.Max(rss(last)); b > a+a/2+64<<20 {
		t.Errorf("RSS grew from %d MiB (first third) to %d MiB (last third)", a>>20, b>>20)
	}
	if a, b := slices.Max(fds(first)), slices.Max(fds(last)); b > a+16 {
		t.Errorf("descriptors grew from %d (first third) to %d (last third)", a, b)
	}
	// The server checks each flow a moment after its client is done.
	for deadline := time.Now().Add(20 * time.Second); int64(far.verified()) < n && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	far.mu.Lock()
	defer far.mu.Unlock()
	for _, err := range far.errs[:min(len(far.errs), 10)] {
		t.Errorf("at the server: %v", err)
	}
	if int64(far.ok) < n {
		t.Errorf("the server verified %d flows, the clients %d", far.ok, n)
	}
}
