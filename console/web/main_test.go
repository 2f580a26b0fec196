package web

import (
	"os"
	"testing"

	"github.com/shunt-dev/shunt/internal/testns"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testns.Report(os.Stderr, false)
	os.Exit(code)
}
