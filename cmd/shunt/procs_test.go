package main

import (
	"runtime"
	"runtime/debug"
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

func TestSetGC(t *testing.T) {
	before := debug.SetGCPercent(100)
	beforeLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(beforeLimit)
	})
	none := func(string) string { return "" }

	p, limit, pEnv, lEnv := setGC(none, 64<<20)
	if p != gcPercent || pEnv || limit != 4*64<<20+128<<20 || lEnv {
		t.Errorf("no GOGC, GOMEMLIMIT, a 64 MiB budget: got %d%%, limit %d (from env %v, %v), want %d%% and %d set by shunt",
			p, limit, pEnv, lEnv, gcPercent, 4*64<<20+128<<20)
	}
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("no GOGC: the target in force is %d, want %d", got, gcPercent)
	}
	if got := debug.SetMemoryLimit(-1); got != limit {
		t.Errorf("no GOMEMLIMIT: the limit in force is %d, want %d", got, limit)
	}

	// The runtime read GOGC and GOMEMLIMIT at start; shunt leaves their
	// choice alone.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(1 << 30)
	env := func(k string) string {
		switch k {
		case "GOGC":
			return "50"
		case "GOMEMLIMIT":
			return "1GiB"
		}
		return ""
	}
	p, limit, pEnv, lEnv = setGC(env, 64<<20)
	if p != 50 || !pEnv || limit != 1<<30 || !lEnv {
		t.Errorf("GOGC=50 GOMEMLIMIT=1GiB: got %d%%, limit %d (from env %v, %v), want 50%% and 1 GiB from the environment", p, limit, pEnv, lEnv)
	}
	if got := debug.SetGCPercent(100); got != 50 {
		t.Errorf("GOGC=50: the target in force is %d, want 50", got)
	}
}
