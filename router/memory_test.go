package router

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/events"
	"github.com/shunt-dev/shunt/state"
)

// bufConn is the application's side of a flow with buffers of its own (as
// netstack's flows have): it reports fixed sizes and records the cuts.
type bufConn struct {
	*net.TCPConn
	send, recv int64
	mu         sync.Mutex
	cuts       []string
}

var _ Buffers = (*bufConn)(nil)

func (c *bufConn) Buffered() (int64, int64) { return c.send, c.recv }

func (c *bufConn) ShrinkSend(cut bool) { c.record("send", cut) }

func (c *bufConn) ShrinkReceive(cut bool) { c.record("receive", cut) }

func (c *bufConn) record(what string, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cut {
		what += " back"
	}
	c.cuts = append(c.cuts, what)
}

func (c *bufConn) Cuts() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.cuts, ",")
}

// Abort resets, as netstack's flows do.
func (c *bufConn) Abort() {
	c.SetLinger(0)
	c.TCPConn.Close()
}

// memFlow is a flow through r whose far side sends without pause: its
// application's side is a bufConn with small socket buffers, so a write
// toward an application that does not read blocks soon.
type memFlow struct {
	app, server net.Conn
	down        *bufConn
	fe          *flowEntry
}

func openMemFlow(t *testing.T, r *Router, u *loopUpstreams, port int, send int64) *memFlow {
	t.Helper()
	return openMemFlowBuffers(t, r, u, port, send, 4<<10)
}

// openMemFlowBuffers is openMemFlow with the socket buffers between
// the router and the application of size sockBuf (0: the system's).
func openMemFlowBuffers(t *testing.T, r *Router, u *loopUpstreams, port int, send int64, sockBuf int) *memFlow {
	t.Helper()
	return openMemFlowTo(t, r, u, "10.1.0.5:993", port, send, sockBuf)
}

// openMemFlowTo is openMemFlowBuffers to dst.
func openMemFlowTo(t *testing.T, r *Router, u *loopUpstreams, dst string, port int, send int64, sockBuf int) *memFlow {
	t.Helper()
	f := &memFlow{}
	f.app, f.server = openFlow(t, r, u, func(c net.Conn) net.Conn {
		tc := c.(*net.TCPConn)
		if sockBuf > 0 {
			tc.SetWriteBuffer(sockBuf)
		}
		f.down = &bufConn{TCPConn: tc, send: send}
		return f.down
	}, fmt.Sprintf("192.0.2.1:%d", port), dst)
	if sockBuf > 0 {
		f.app.(*net.TCPConn).SetReadBuffer(sockBuf)
	}
	t.Cleanup(func() { f.app.Close(); f.server.Close() })
	go func() {
		b := make([]byte, 32<<10)
		for {
			if _, err := f.server.Write(b); err != nil {
				return
			}
		}
	}()
	flows := r.Flows()
	r.table.mu.Lock()
	f.fe = r.table.byID[flows[len(flows)-1].ID]
	r.table.mu.Unlock()
	return f
}

// blocked waits until the flow's write toward the application is in
// progress and stays so: the application does not read.
func (f *memFlow) blocked(t *testing.T) {
	t.Helper()
	waitUntil(t, "the write toward the application to block", func() bool {
		w := f.fe.bytes.writesBA.Load()
		if w%2 == 0 {
			return false
		}
		time.Sleep(20 * time.Millisecond)
		return f.fe.bytes.writesBA.Load() == w
	})
}

// A flow whose application stops reading: once its write has made no
// progress for StallAfter, its send buffer is cut, and put back once it
// drains; its estimate is the send buffer, the chunk and the tunnel's
// window while the write is blocked.
func TestMemoryStallCutsBuffers(t *testing.T) {
	u := newLoopUpstreams(t)
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: nullLog(),
		Memory: MemoryOptions{TunnelWindow: 2 << 20, StallAfter: time.Second}})
	f := openMemFlow(t, r, u, 5001, 1<<20)
	f.blocked(t)
	t0 := time.Now()
	want := int64(1<<20 + spliceBufSize + 2<<20)
	for _, s := range []struct {
		at      time.Duration
		stalled int
		cuts    string
	}{
		{0, 0, ""},
		{500 * time.Millisecond, 0, ""},
		{time.Second, 1, "send"},
		{2 * time.Second, 1, "send"}, // cut once
	} {
		use := r.SweepMemory(t0.Add(s.at))
		if use.Flows != 1 || use.Stalled != s.stalled || use.Buffered != want || f.down.Cuts() != s.cuts {
			t.Errorf("sweep at +%v: %+v, cuts %q; want 1 flow, %d stalled, %d buffered, cuts %q", s.at, use, f.down.Cuts(), s.stalled, want, s.cuts)
		}
	}
	// The application reads: the write returns, and the cut is undone.
	go io.Copy(io.Discard, f.app)
	moved := f.fe.bytes.bToA.Load()
	waitUntil(t, "the flow to move", func() bool { return f.fe.bytes.bToA.Load() > moved+64<<10 })
	var use MemoryUse
	for i := 0; f.down.Cuts() != "send,send back"; i++ {
		if i > 1000 {
			t.Fatalf("the cut was not undone once the flow drained: cuts %q", f.down.Cuts())
		}
		use = r.SweepMemory(t0.Add(3*time.Second + time.Duration(i)*time.Millisecond))
		time.Sleep(time.Millisecond)
	}
	if use.Stalled != 0 {
		t.Errorf("after draining: %+v, want none stalled", use)
	}
}

// Over the budget, the flows stalled longest are reset until the estimate
// is under it again: their applications see a reset, the close events
// and the log say why, and one warning counts them. A flow that drains
// keeps going.
func TestMemoryBudgetResetsStalledLongest(t *testing.T) {
	u := newLoopUpstreams(t)
	var bus events.Bus
	sub := bus.Subscribe(64)
	defer sub.Close()
	log, hook := test.NewNullLogger()
	const window = 2 << 20
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus,
		Memory: MemoryOptions{Budget: 4 << 20, TunnelWindow: window, ResetAfter: DefaultStallAfter}})
	// A flow that reads all the while, direct (no window) and without
	// a send buffer of its own: while its write is in progress it counts
	// only the splice's chunk.
	busy := openMemFlowTo(t, r, u, "10.9.0.5:80", 5000, 0, 0)
	go io.Copy(io.Discard, busy.app)

	// On the real clock: the busy flow's writes return at once.
	var stalled []*memFlow
	var lastSeen time.Time
	for i := range 4 {
		f := openMemFlow(t, r, u, 5001+i, 1<<20)
		f.blocked(t)
		stalled = append(stalled, f)
		lastSeen = time.Now()
		r.SweepMemory(lastSeen)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Until(lastSeen.Add(DefaultStallAfter)))
	each := int64(1<<20 + spliceBufSize + window)
	use := r.SweepMemory(time.Now())
	// 4 stalled flows hold 4 x ~3 MiB: the 3 oldest go, and the newest
	// fits the 4 MiB, with the busy flow's chunk if its write is in
	// progress.
	if use.ResetNow != 3 || use.Reset != 3 || use.Stalled != 1 || use.Buffered > use.Budget || use.Buffered < each {
		t.Errorf("sweep over the budget: %+v, want 3 reset, 1 stalled left, buffered between %d and the budget", use, each)
	}
	for i, f := range stalled {
		f.app.SetReadDeadline(time.Now().Add(10 * time.Second))
		// A reset one fails after what its socket held; the survivor
		// goes on giving data.
		_, err := io.Copy(io.Discard, io.LimitReader(f.app, 1<<20))
		switch reset := errors.Is(err, syscall.ECONNRESET); {
		case i < 3 && !reset:
			t.Errorf("stalled flow %d (among the oldest): the application read %v, want a reset", i, err)
		case i == 3 && reset:
			t.Errorf("stalled flow %d (the newest, within the budget) was reset", i)
		}
	}
	// The busy flow still carries data both ways.
	busy.app.Write([]byte("ping"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(busy.server, b); err != nil || string(b) != "ping" {
		t.Errorf("the busy flow after the resets: %q, %v", b, err)
	}
	waitUntil(t, "the reset flows to leave the table", func() bool { return len(r.Flows()) == 2 })
	reasons := map[string]int{}
	for len(reasons) == 0 || reasons[reasonMemory] < 3 {
		select {
		case e := <-sub.C():
			if e.Event == state.EventClose {
				reasons[e.Reason]++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("close events %v, want 3 with reason %q", reasons, reasonMemory)
		}
	}
	var warned, flowLogs int
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "over the flow memory budget (flow_memory: 4MiB)") {
			warned++
			if e.Data["reset"] != int64(3) || e.Data["budget"] != int64(4<<20) {
				t.Errorf("the warning's fields %v, want reset 3 and budget %d", e.Data, 4<<20)
			}
		}
		if strings.HasPrefix(e.Message, "flow reset: its application stopped reading") {
			flowLogs++
		}
	}
	if warned != 1 || flowLogs != 3 {
		t.Errorf("%d warnings and %d flow lines about resets over the budget, want 1 and 3", warned, flowLogs)
	}
	// Within the rate limit: more resets wait for the next warning.
	r.SetMemoryBudget(16 << 20)
	if use := r.SweepMemory(time.Now()); use.ResetNow != 0 || use.Budget != 16<<20 {
		t.Errorf("under a raised budget: %+v, want no reset", use)
	}
}

// Without a budget nothing is reset, however much is buffered.
func TestMemoryNoBudget(t *testing.T) {
	u := newLoopUpstreams(t)
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: nullLog(), Memory: MemoryOptions{TunnelWindow: 2 << 20}})
	f := openMemFlow(t, r, u, 5001, 64<<20)
	f.blocked(t)
	t0 := time.Now()
	r.SweepMemory(t0)
	if use := r.SweepMemory(t0.Add(5 * time.Second)); use.ResetNow != 0 || use.Stalled != 1 || use.Buffered < 64<<20 {
		t.Errorf("no budget: %+v, want the flow stalled, not reset", use)
	}
	f.app.Close()
	f.server.Close()
	r.Wait()
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{
		512: "512B", 64 << 10: "64KiB", 512 << 20: "512MiB", 3 << 29: "1.5GiB", 2 << 30: "2GiB", 1 << 40: "1TiB",
	} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func nullLog() *logrus.Logger {
	l, _ := test.NewNullLogger()
	return l
}

// Over the budget (but within UrgentOver times it), a flow stalled for
// less than ResetAfter is not reset: under heavy load a slow reader's
// write stays in progress for seconds.
func TestMemoryBudgetWaitsResetAfter(t *testing.T) {
	u := newLoopUpstreams(t)
	r := New(flowRules, Options{Tunnels: u, Direct: u, Log: nullLog(),
		Memory: MemoryOptions{Budget: 4 << 20, TunnelWindow: 2 << 20, ResetAfter: time.Hour}})
	for i := range 4 {
		f := openMemFlow(t, r, u, 5101+i, 1<<20)
		f.blocked(t)
	}
	t0 := time.Now()
	r.SweepMemory(t0)
	use := r.SweepMemory(t0.Add(time.Minute))
	if use.ResetNow != 0 || use.Stalled != 4 || use.Buffered <= use.Budget {
		t.Errorf("sweep over the budget before ResetAfter: %+v, want 4 stalled, none reset", use)
	}
	use = r.SweepMemory(t0.Add(time.Hour + time.Minute))
	if use.ResetNow == 0 {
		t.Errorf("sweep over the budget after ResetAfter: %+v, want resets", use)
	}
}
