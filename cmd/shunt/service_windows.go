package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/windows/registry"
	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
)

// Windows service: shunt daemon, started by the service control manager,
// runs as the service itself. Install it with
//
//	sc.exe create shunt binPath= "C:\Program Files\shunt\shunt.exe daemon" start= auto
//
// (the service's name is the event source's, serviceName). Stop and
// Shutdown stop it as SIGTERM would (a second one hurries it), and its log
// goes to the Application event log.

// serviceName is the service's name, and its event log source's.
const serviceName = "shunt"

// eventID is the event ID of every line: the source's messages are
// EventCreate.exe's, which shows the text as it is for IDs 1 to 1000.
const eventID = 1

// runService runs run as the service when the service control manager
// started this process; ok is false otherwise (a console).
func runService(run func(*serviceHooks) int) (code int, ok bool) {
	isService, err := svc.IsWindowsService()
	if err != nil || !isService {
		return 0, false
	}
	if err := installEventSource(); err != nil {
		// Events still arrive, shown with a note that their source
		// is unknown.
		fmt.Fprintln(os.Stderr, "shunt: the event log source:", err)
	}
	h := &service{run: run}
	// Without the event log the service still runs (and stops), its log
	// lost.
	if el, err := eventlog.Open(serviceName); err == nil {
		defer el.Close()
		h.el = el
	}
	if err := svc.Run(serviceName, h); err != nil {
		if h.el != nil {
			h.el.Error(eventID, "shunt: running as a service: "+err.Error())
		}
		return 1, true
	}
	return h.code, true
}

// installEventSource registers shunt as a source of the Application log,
// once: as the service it runs as LocalSystem, which may.
func installEventSource() error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\EventLog\Application\`+serviceName, registry.QUERY_VALUE)
	if err == nil {
		k.Close()
		return nil
	}
	if !errors.Is(err, registry.ErrNotExist) {
		return err
	}
	return eventlog.InstallAsEventCreate(serviceName, eventlog.Error|eventlog.Warning|eventlog.Info)
}

// service is svc.Handler: it runs shunt daemon and answers the manager.
type service struct {
	run  func(*serviceHooks) int
	el   *eventlog.Log // nil: the event log did not open
	code int
}

// stopWait is how long the manager is told to wait for the stop: the
// flows' shutdown_grace and the routes' removal.
const stopWait = 30 * time.Second

func (s *service) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	stop := make(chan os.Signal, 4)
	done := make(chan int, 1)
	hooks := &serviceHooks{stop: stop, output: io.Discard}
	if s.el != nil {
		hooks.log, hooks.output = eventHook{s.el}, eventWriter{s.el}
	}
	go func() { done <- s.run(hooks) }()
	// Running from the start: the start-up may wait long (a
	// passphrase asked through shunt auth), and Stop must work then.
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case s.code = <-done:
			if s.code != 0 {
				return true, uint32(s.code)
			}
			return false, 0
		case r := <-reqs:
			switch r.Cmd {
			case svc.Interrogate:
				status <- r.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait / time.Millisecond)}
				select {
				case stop <- os.Interrupt:
				default: // three are waiting already
				}
			}
		}
	}
}

// eventHook sends each log line to the event log, at its level.
type eventHook struct{ el *eventlog.Log }

func (eventHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h eventHook) Fire(e *logrus.Entry) error {
	// The event log stamps the time itself.
	b, err := (&logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}).Format(e)
	if err != nil {
		return err
	}
	msg := strings.TrimSpace(string(b))
	switch {
	case e.Level <= logrus.ErrorLevel:
		return h.el.Error(eventID, msg)
	case e.Level == logrus.WarnLevel:
		return h.el.Warning(eventID, msg)
	}
	return h.el.Info(eventID, msg)
}

// eventWriter writes what shunt prints as error events.
type eventWriter struct{ el *eventlog.Log }

func (w eventWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		if err := w.el.Error(eventID, msg); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
