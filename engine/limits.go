package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// logFileLimit says how many descriptors shunt may open, and so how many
// flows it can hold. Go raised the soft limit to (one below) the hard one
// at start (Go 1.19 on); a tunnelled flow costs no descriptor (the stack is
// gVisor's, the channel rides the SSH connection), a direct flow one.
func logFileLimit(log logrus.FieldLogger) {
	soft, hard, err := fileLimit()
	if err != nil {
		log.WithError(err).Debug("reading the descriptor limit")
		return
	}
	f := logrus.Fields{"soft": soft, "hard": hard}
	room := ""
	// What is open before the TUN, the control socket and the first SSH
	// connection: the room left is a few less than said.
	if open, err := openFiles(); err == nil && uint64(open)+8 < soft {
		f["open"] = open
		room = fmt.Sprintf(" (room for about %d)", soft-uint64(open)-8)
	}
	log.WithFields(f).
		Infof("descriptor limit %d: tunnelled flows take none, each direct flow and SSH connection one%s; at the limit new direct flows are refused", soft, room)
}

// outOfFiles tells whether err is the process or the system running out
// of descriptors.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// fdWarnEvery bounds how often the warning about the descriptor limit is
// logged; the flows refused meanwhile are counted in the next one.
const fdWarnEvery = 10 * time.Second

// fdDialer is a Dialer that warns, at most every fdWarnEvery, when dials
// fail for want of descriptors (the flow is refused, a RST, as for any
// dial that fails).
type fdDialer struct {
	Dialer
	log logrus.FieldLogger
	now func() time.Time

	mu      sync.Mutex
	last    time.Time // the last warning
	refused int       // dials refused since
}

func newFDDialer(d Dialer, log logrus.FieldLogger) *fdDialer {
	return &fdDialer{Dialer: d, log: log, now: time.Now}
}

func (d *fdDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.Dialer.DialContext(ctx, network, addr)
	if err != nil && outOfFiles(err) {
		d.outOfFiles(err)
	}
	return c, err
}

func (d *fdDialer) outOfFiles(err error) {
	d.mu.Lock()
	d.refused++
	now := d.now()
	if !d.last.IsZero() && now.Sub(d.last) < fdWarnEvery {
		d.mu.Unlock()
		return
	}
	n := d.refused
	d.last, d.refused = now, 0
	d.mu.Unlock()
	f := logrus.Fields{"refused": n, logrus.ErrorKey: err}
	if soft, _, lerr := fileLimit(); lerr == nil {
		f["limit"] = soft
	}
	d.log.WithFields(f).Warn("out of file descriptors: new connections are refused until flows close (raise the limit: ulimit -n, or LimitNOFILE= in the systemd unit)")
}
