package platform

import (
	"os"
	"testing"

	"github.com/shunt-dev/shunt/internal/testns"
)

// The tests skipped for want of root are listed at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	testns.Report(os.Stderr, false)
	os.Exit(code)
}
