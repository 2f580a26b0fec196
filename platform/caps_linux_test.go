package platform

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shunt-dev/shunt/internal/testns"
)

const capsChildEnv = "SHUNT_TEST_KEEP_CAPS"

// TestKeepCapabilitiesHelper is not a test: TestKeepCapabilities runs it
// as a child process (capsChildEnv set), since the drop cannot be undone.
// It starts threads before the drop and after it, drops, and prints every
// thread's capability sets.
func TestKeepCapabilitiesHelper(t *testing.T) {
	if os.Getenv(capsChildEnv) == "" {
		return
	}
	var before sync.WaitGroup
	hold := make(chan struct{})
	// Threads that exist before the drop: locked goroutines keep them.
	for range 4 {
		before.Add(1)
		go func() {
			runtime.LockOSThread()
			before.Done()
			<-hold
		}()
	}
	before.Wait()
	kept, err := KeepCapabilities([]Capability{CapNetAdmin, CapDACReadSearch})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	// A thread made after the drop inherits the sets.
	after := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(after)
		<-hold
	}()
	<-after
	fmt.Println("kept", kept.Kept, "missing", kept.Missing, "bound", kept.BoundKept)
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, p := range tasks {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		s := bufio.NewScanner(f)
		var line []string
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.HasPrefix(k, "Cap") {
				line = append(line, k+"="+strings.TrimSpace(v))
			}
		}
		f.Close()
		fmt.Println("task", strings.Join(line, " "))
	}
	close(hold)
	os.Exit(0)
}

// Every thread, those made before the drop and after it, keeps exactly
// the capabilities asked for, in the effective, permitted and bounding
// sets, and none inheritable or ambient.
func TestKeepCapabilities(t *testing.T) {
	lack := ""
	if os.Geteuid() != 0 {
		lack = "needs root (capabilities to drop)"
	}
	testns.Need(t, lack)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeepCapabilitiesHelper$")
	cmd.Env = append(os.Environ(), capsChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	// CAP_NET_ADMIN (12) and CAP_DAC_READ_SEARCH (2).
	want := strconv.FormatUint(1<<12|1<<2, 16)
	want = strings.Repeat("0", 16-len(want)) + want
	tasks := 0
	for l := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(l, "kept ") && l != "kept [CAP_NET_ADMIN CAP_DAC_READ_SEARCH] missing [] bound false" {
			t.Errorf("reported %q", l)
		}
		rest, ok := strings.CutPrefix(l, "task ")
		if !ok {
			continue
		}
		tasks++
		for _, kv := range strings.Fields(rest) {
			k, v, _ := strings.Cut(kv, "=")
			w := want
			if k == "CapInh" || k == "CapAmb" {
				w = "0000000000000000"
			}
			if v != w {
				t.Errorf("a thread's %s is %s, want %s", k, v, w)
			}
		}
	}
	if tasks < 6 {
		t.Errorf("%d threads reported, want at least 6:\n%s", tasks, out)
	}
	t.Logf("%d threads checked", tasks)
}
