package main

import (
	"fmt"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"
	"github.com/sirupsen/logrus"
)

// notifier tells systemd (Type=notify) where shunt is: READY=1 once its
// routes are in place, RELOADING=1 and READY=1 around a reload,
// STOPPING=1 at the stop, and WATCHDOG=1 while the packet path runs.
// Outside systemd ($NOTIFY_SOCKET unset) it does nothing.
type notifier struct {
	log logrus.FieldLogger
	// notify sends a state (sddaemon.SdNotify); a test records them.
	notify func(state string) (bool, error)
}

func newNotifier(log logrus.FieldLogger) *notifier {
	return &notifier{log: log, notify: func(s string) (bool, error) { return sddaemon.SdNotify(false, s) }}
}

func (n *notifier) send(state string) {
	if _, err := n.notify(state); err != nil {
		n.log.WithError(err).Warn("telling systemd " + state)
	}
}

func (n *notifier) ready() { n.send(sddaemon.SdNotifyReady) }

// reloading is sent before a reload, with the time systemd ≥ 253 wants
// (to tell this reload from an earlier one); ready after it.
func (n *notifier) reloading() {
	state := sddaemon.SdNotifyReloading
	if us := monotonicUsec(); us > 0 {
		state += fmt.Sprintf("\nMONOTONIC_USEC=%d", us)
	}
	n.send(state)
}

func (n *notifier) stopping() { n.send(sddaemon.SdNotifyStopping) }

// watchdog pings systemd's watchdog at half its interval (WatchdogSec)
// for as long as alive says the packet path runs, until done is closed. A
// packet path that stopped gets no more pings, and systemd restarts
// shunt.
func (n *notifier) watchdog(interval time.Duration, alive func() bool, done <-chan struct{}) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			if alive() {
				n.send(sddaemon.SdNotifyWatchdog)
			} else {
				n.log.Error("the packet path has stopped: no watchdog ping for systemd")
			}
		}
	}
}

// watchdogInterval is WatchdogSec as systemd passes it to shunt, 0 when
// off or meant for another process.
func watchdogInterval(log logrus.FieldLogger) time.Duration {
	d, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.WithError(err).Warn("systemd's watchdog settings cannot be read: no watchdog pings")
		return 0
	}
	return d
}
