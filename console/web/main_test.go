package web

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/shunt-dev/shunt/internal/testns"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		testns.Report(os.Stderr, false)
		os.Exit(code)
	}))
}
