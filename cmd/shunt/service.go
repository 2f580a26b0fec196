package main

import (
	"io"
	"os"

	"github.com/sirupsen/logrus"
)

// serviceHooks connect shunt daemon to a service manager that is not
// systemd: Windows' (service_windows.go). Nil where there is none.
type serviceHooks struct {
	// stop receives a signal for each Stop or Shutdown the manager
	// sends: the first stops shunt as SIGTERM does, a second hurries it.
	stop <-chan os.Signal
	// log receives every line logged, in place of stderr, which a
	// service does not have (the event log).
	log logrus.Hook
	// output takes what shunt prints before its log is set up (usage,
	// configuration errors), in place of stdout and stderr.
	output io.Writer
}

// attach makes log and sigs the hooks': the log's lines go to the hook
// alone, and the manager's stops become signals on sigs until done is
// closed.
func (h *serviceHooks) attach(log *logrus.Logger, sigs chan<- os.Signal, done <-chan struct{}) {
	if h == nil {
		return
	}
	if h.log != nil {
		log.AddHook(h.log)
		log.Out = io.Discard
	}
	go func() {
		for {
			select {
			case sig := <-h.stop:
				select {
				case sigs <- sig:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
}
