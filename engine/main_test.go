package engine_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must stop the goroutines it starts: Close stops the engine's.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
