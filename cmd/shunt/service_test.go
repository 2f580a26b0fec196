package main

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// A service manager's stops arrive as signals, and the log goes to its
// hook alone.
func TestServiceHooksAttach(t *testing.T) {
	stop := make(chan os.Signal, 1)
	hook := test.NewLocal(logrus.New()) // only its Fire is used
	h := &serviceHooks{stop: stop, log: hook}
	var stderr bytes.Buffer
	log := logrus.New()
	log.Out = &stderr
	sigs := make(chan os.Signal, 4)
	done := make(chan struct{})
	h.attach(log, sigs, done)
	log.Info("hello")
	if stderr.Len() != 0 {
		t.Errorf("logged to stderr too: %q", stderr.String())
	}
	if e := hook.LastEntry(); e == nil || e.Message != "hello" {
		t.Errorf("the hook got %v", e)
	}
	stop <- syscall.SIGTERM
	select {
	case sig := <-sigs:
		if sig != syscall.SIGTERM {
			t.Errorf("signal %v", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stop did not arrive as a signal")
	}
	close(done)

	// Without a service manager nothing changes.
	var none *serviceHooks
	none.attach(log, sigs, done)
}
