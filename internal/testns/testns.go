//go:build linux

package testns

import (
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Run runs f on a thread in a new network namespace with lo up; processes
// started from f live in it too. It needs root: without it the test is
// skipped, or fails under RequiredEnv (see Need).
func Run(t *testing.T, f func()) {
	t.Helper()
	lack := ""
	if os.Geteuid() != 0 {
		lack = "needs root to make a network namespace (and a TUN device)"
	}
	Need(t, lack)
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
