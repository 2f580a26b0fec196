package httpproxy

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/shunt-dev/shunt/internal/testns"
)

// Every test must stop the goroutines it starts; the curl tests' skips
// are listed after the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testns.Report(os.Stderr, false)
		os.Exit(code)
	}))
}
