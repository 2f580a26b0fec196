package engine

import (
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/platform"
)

// The clock watch: a tick every clockPeriod; a gap between two ticks of
// more than clockJump (on the monotonic clock: shunt was stopped, SIGSTOP;
// or on the wall clock: the machine slept, which the monotonic clock does
// not count) means connections may have died meanwhile.
const (
	clockPeriod = time.Second
	clockJump   = 5 * time.Second
)

// netWatch checks the SSH connections at once, instead of waiting for
// their keepalives, when the network changes (platform.WatchNetwork) or
// the clock jumps. Checks run one at a time; requests that come while one
// runs are gathered into the next.
type netWatch struct {
	check func(reason string) int // broker.CheckNow
	log   logrus.FieldLogger

	mu      sync.Mutex
	reasons []string
	kick    chan struct{} // buffered 1: a check is asked for
	quit    chan struct{}
	wg      sync.WaitGroup
	net     *platform.NetWatcher
}

// startWatch starts the clock watch, and on the OS's capture the network
// watch, for the device named device. It runs until stop.
func (e *Engine) startWatch(device string) *netWatch {
	w := &netWatch{check: e.broker.CheckNow, log: e.log, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	// This host's addresses as of now, the TUN's included; the network
	// watch reads them again on each change.
	locals, _ := e.deps.Locals.(*localAddrs)
	if locals != nil {
		locals.refresh()
	}
	w.wg.Add(2)
	go w.checks()
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(clockPeriod)
		defer t.Stop()
		w.watchClock(t.C, time.Now)
	}()
	if e.osCapture != nil {
		nw, err := platform.WatchNetwork(platform.NetWatchOptions{Device: device, Table: platform.DefaultTable, OnChange: func(why string) {
			if locals != nil {
				locals.refresh()
			}
			w.request("the network changed: " + why)
		}, Log: e.log})
		if err != nil {
			e.log.WithError(err).Warn("not watching the network: after a change, the keepalives notice broken SSH connections")
		}
		w.net = nw
	}
	return w
}

// request asks for a check, for reason.
func (w *netWatch) request(reason string) {
	w.mu.Lock()
	if len(w.reasons) < 4 {
		w.reasons = append(w.reasons, reason)
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// checks runs the checks asked for until stop.
func (w *netWatch) checks() {
	defer w.wg.Done()
	for {
		select {
		case <-w.quit:
			return
		case <-w.kick:
		}
		w.mu.Lock()
		why := strings.Join(w.reasons, "; ")
		w.reasons = nil
		w.mu.Unlock()
		if n := w.check(why); n > 0 {
			w.log.WithField("replaced", n).Info("SSH connections replaced after the check; the next flow reconnects")
		}
	}
}

// watchClock asks for a check whenever two ticks are much further apart
// than they should be, until stop.
func (w *netWatch) watchClock(tick <-chan time.Time, now func() time.Time) {
	j := jumpDetector{limit: clockJump}
	j.observe(now())
	for {
		select {
		case <-w.quit:
			return
		case <-tick:
			// The time now, not the tick's: a tick sent before a stop
			// may be read only after it.
			if gap, jumped := j.observe(now()); jumped {
				w.log.WithField("gap", gap.Round(time.Millisecond).String()).
					Warn("the clock jumped (the machine slept, or shunt was stopped): checking the SSH connections now")
				w.request("clock jump of " + gap.Round(time.Second).String())
			}
		}
	}
}

// stop ends the watches; the check running, if any, goes on (wait).
func (w *netWatch) stop() {
	if w == nil {
		return
	}
	close(w.quit)
	w.net.Close()
}

// wait waits for the watches' goroutines, after stop.
func (w *netWatch) wait() {
	if w != nil {
		w.wg.Wait()
	}
}

// jumpDetector notices gaps between observations longer than limit, on
// the monotonic clock or on the wall clock.
type jumpDetector struct {
	limit time.Duration
	last  time.Time
}

// observe records now and tells the gap since the last observation, and
// whether it is a jump.
func (j *jumpDetector) observe(now time.Time) (time.Duration, bool) {
	last := j.last
	j.last = now
	if last.IsZero() {
		return 0, false
	}
	// Sub uses the monotonic readings when both have them; Round(0)
	// strips them, for the wall clock's gap.
	gap := max(now.Sub(last), now.Round(0).Sub(last.Round(0)))
	return gap, gap > j.limit
}
