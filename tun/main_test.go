package tun

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/shunt-dev/shunt/internal/testns"
)

// Every test must stop the goroutines it starts; the tests skipped for
// want of root are listed at the end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testns.Report(os.Stderr, false)
		os.Exit(code)
	}))
}
