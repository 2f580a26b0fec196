// Package testns runs test code in a network namespace of its own, so a test
// that makes devices, addresses and routes changes nothing on the host, and
// keeps count of the tests skipped for what the machine lacks, so that the
// skips are seen.
package testns

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// RequiredEnv, set to 1 (as .ci/run does), turns a missing prerequisite
// into a failure instead of a skip.
const RequiredEnv = "SHUNT_E2E_REQUIRED"

// noTestsToRun is the line the testing package prints when -run matches
// nothing. go test looks for it in a passing package's output, which it
// otherwise throws away, and then ends the package's ok line with
// "[no tests to run]".
const noTestsToRun = "testing: warning: no tests to run"

// skips is what Need saw in this test binary. It is shared by the tests
// and TestMain, so it lives in the package.
var skips struct {
	mu      sync.Mutex
	ran     int                 // tests that had what they need
	reasons []string            // in the order first seen
	tests   map[string][]string // reason → skipped tests
}

// Need is a test's check for what it needs from the machine: lack says
// what is missing and how to get it, and is empty when nothing is. A
// missing prerequisite skips the test, or fails it when RequiredEnv is 1
// (as in CI); Report lists the skipped tests afterwards.
func Need(t testing.TB, lack string) {
	t.Helper()
	skips.mu.Lock()
	if lack == "" {
		skips.ran++
		skips.mu.Unlock()
		return
	}
	if os.Getenv(RequiredEnv) == "1" {
		skips.mu.Unlock()
		t.Fatal(lack + "; " + RequiredEnv + "=1 makes this a failure")
	}
	if skips.tests == nil {
		skips.tests = map[string][]string{}
	}
	if _, seen := skips.tests[lack]; !seen {
		skips.reasons = append(skips.reasons, lack)
	}
	skips.tests[lack] = append(skips.tests[lack], t.Name())
	skips.mu.Unlock()
	t.Skip(lack)
}

// Report writes, once, after the tests, which ones Need skipped and why,
// so that a skip is not taken for a pass. TestMain calls it with
// os.Stderr after m.Run: go test shows it with -v or -json, when run in
// the package's directory without a package argument, and when the
// package fails. For a package list (go test ./...) go test shows only a
// passing package's ok line; when every test that called Need was
// skipped and everyTestNeeds says that is every test of the package (as
// in e2e), Report also prints the testing package's "no tests to run"
// line, so that the ok line ends in "[no tests to run]", which is true.
func Report(w io.Writer, everyTestNeeds bool) {
	skips.mu.Lock()
	defer skips.mu.Unlock()
	if len(skips.reasons) == 0 {
		return
	}
	pkg := strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
	var b strings.Builder
	n := 0
	for _, r := range skips.reasons {
		n += len(skips.tests[r])
	}
	fmt.Fprintf(&b, "%s: %d %s SKIPPED, not run:\n", pkg, n, plural(n, "test", "tests"))
	for _, r := range skips.reasons {
		names := slices.Clone(skips.tests[r])
		slices.Sort(names)
		fmt.Fprintf(&b, "  %s: %s\n", strings.Join(names, ", "), r)
	}
	fmt.Fprintf(&b, "  (%s=1 makes a missing prerequisite a failure)\n", RequiredEnv)
	if everyTestNeeds && skips.ran == 0 {
		fmt.Fprintln(&b, noTestsToRun)
	}
	io.WriteString(w, b.String())
	skips.reasons, skips.tests = nil, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
