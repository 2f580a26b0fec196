//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A second signal while shunt stops, and a log nobody reads any more,
// must never keep shunt from removing its policy rules, routes and TUN:
// left behind, the rule sends captured traffic into a table that only a
// later start of shunt clears.
func TestStopSignals(t *testing.T) {
	prerequisites(t)
	topo := newTopology(t)
	topo.client.exec(t, "ip", "route", "add", "default", "via", gatewayAddr)
	sd := startSSHD(t, topo.gateway)
	echoOn(t, topo.internal, net.JoinHostPort(internalAddr, fmt.Sprint(portEcho)))
	config := shuntConfig(topo, sd, sd.knownHosts, internalRules)
	internal := func(port int) string { return net.JoinHostPort(internalAddr, fmt.Sprint(port)) }
	// busy checks that shunt works and leaves a flow open for the
	// tear-down to reset.
	busy := func(t *testing.T) {
		echoCheck(t, topo.client, internal(portEcho), []byte("before the signals"))
		c, err := topo.client.dial(context.Background(), internal(portEcho))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}

	for _, c := range []struct {
		name string
		// signals are sent in order; wait makes the second wait until
		// shunt logs that it is stopping.
		signals []syscall.Signal
		wait    bool
	}{
		{"SIGINT twice, back to back", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, false},
		{"SIGINT then SIGTERM, back to back", []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}, false},
		{"SIGINT, then SIGINT while stopping", []syscall.Signal{syscall.SIGINT, syscall.SIGINT}, true},
		{"SIGTERM, then SIGTERM twice while stopping", []syscall.Signal{syscall.SIGTERM, syscall.SIGTERM, syscall.SIGTERM}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for round := range 3 {
				sh := startShunt(t, topo, config)
				busy(t)
				for i, sig := range c.signals {
					if i == 1 && c.wait {
						waitForNow(t, "shunt to start stopping", func() bool {
							return strings.Contains(sh.log.String(), "stopping:")
						})
					}
					sh.cmd.Process.Signal(sig)
				}
				err := sh.wait(t)
				assertClean(t, topo)
				if t.Failed() {
					t.Fatalf("round %d: exit %v; leftovers above", round+1, err)
				}
				if !exitedAfterRemoval(err, sh.log.String()) {
					t.Fatalf("round %d: shunt exited with %v before it said its routes and rules were removed:\n%s", round+1, err, sh.log)
				}
			}
		})
	}

	t.Run("stdout and stderr a pipe whose reader has gone", func(t *testing.T) {
		for round := range 2 {
			cmd, done := startShuntPiped(t, topo, config)
			// Flows make shunt log to the broken pipe while it runs.
			busy(t)
			cmd.Process.Signal(syscall.SIGINT)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("round %d: shunt exited with %v after SIGINT (a signal here is SIGPIPE from the closed log)", round+1, err)
				}
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("round %d: shunt did not stop within 30 s of SIGINT", round+1)
			}
			assertClean(t, topo)
			if t.Failed() {
				t.FailNow()
			}
		}
	})
}

// wait waits for shunt to exit after the signals the test sent.
func (s *shunt) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		err := <-s.done
		t.Fatalf("shunt did not exit within 30 s of the signals (%v):\n%s", err, s.log)
		return err
	}
}

// exitedAfterRemoval: shunt exited cleanly; or with status 1, as a third
// signal makes it once the routes and rules are gone; or was ended by a
// signal that came after it said it had removed them (up had returned).
func exitedAfterRemoval(err error, log string) bool {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true
	case !errors.As(err, &ee):
		return false
	case ee.ExitCode() == 1:
		return true
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && strings.Contains(log, "routes and policy rules removed")
}

// waitForNow is waitFor, polling every millisecond: the moment matters.
func waitForNow(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// startShuntPiped starts shunt up with stdout and stderr the write end of
// a pipe, reads the pipe until shunt is up, and then closes the read end:
// every later write of shunt's fails with EPIPE. done gets Wait's error.
func startShuntPiped(t *testing.T, topo *topology, config string) (*exec.Cmd, <-chan error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	_, ctl := socketConfig(t)
	cmd := topo.client.command(shuntBin, "up", "--global", "", "--user-config", "", "--config", ctl, "--config", path)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=", "SUDO_USER=")
	cmd.Stdout, cmd.Stderr = w, w // *os.File: the child writes to the pipe itself
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	})
	var log strings.Builder
	up := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			log.Write(buf[:n])
			if strings.Contains(log.String(), "shunt is up") {
				up <- nil
				return
			}
			if err != nil {
				up <- err
				return
			}
		}
	}()
	select {
	case err := <-up:
		if err != nil {
			t.Fatalf("shunt's log ended before it was up: %v\n%s", err, log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("shunt not up after 20 s (its log is not shown: the reader still owns it)")
	}
	r.Close()
	return cmd, done
}
