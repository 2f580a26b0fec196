package main

import (
	"runtime"
	"testing"
)

func TestLimitProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })

	runtime.GOMAXPROCS(8)
	n, fromEnv := limitProcs(func(string) string { return "" })
	if n != 4 || fromEnv || runtime.GOMAXPROCS(0) != 4 {
		t.Errorf("8 CPUs: got %d (from env %v, in force %d), want 4 set by shunt", n, fromEnv, runtime.GOMAXPROCS(0))
	}

	runtime.GOMAXPROCS(1)
	if n, _ := limitProcs(func(string) string { return "" }); n != 1 || runtime.GOMAXPROCS(0) != 1 {
		t.Errorf("1 CPU: got %d, in force %d, want 1", n, runtime.GOMAXPROCS(0))
	}

	// The runtime read GOMAXPROCS at start; shunt leaves its choice alone.
	runtime.GOMAXPROCS(6)
	env := func(k string) string {
		if k == "GOMAXPROCS" {
			return "6"
		}
		return ""
	}
	n, fromEnv = limitProcs(env)
	if n != 6 || !fromEnv || runtime.GOMAXPROCS(0) != 6 {
		t.Errorf("GOMAXPROCS=6: got %d (from env %v, in force %d), want 6 from the environment", n, fromEnv, runtime.GOMAXPROCS(0))
	}
}
