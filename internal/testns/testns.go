//go:build linux

// Package testns runs test code in a network namespace of its own, so a test
// that makes devices, addresses and routes changes nothing on the host.
package testns

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequiredEnv, set to 1 (as .ci/run does), turns a missing prerequisite
// into a failure instead of a skip.
const RequiredEnv = "SHUNT_E2E_REQUIRED"

// Run runs f on a thread in a new network namespace with lo up; processes
// started from f live in it too. It needs root: without it the test is
// skipped, or fails under RequiredEnv.
func Run(t *testing.T, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "this test needs root to make a network namespace (and a TUN device)"
		if os.Getenv(RequiredEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The thread stays locked and dies with the goroutine: it never
		// returns to the pool in the test namespace.
		runtime.LockOSThread()
		ns, err := netns.New()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		f()
	}()
	<-done
}
