package main

import (
	"math"
	"runtime/debug"
)

// gcPercent is the garbage collector's target shunt sets (GOGC=200): a
// collection once the heap has grown by twice what was live after the
// last one, where Go's default waits for as much again.
//
// shunt's live heap at rest is small (about 4 MiB), and its reverse path
// allocates a fresh buffer for every SSH packet (x/crypto/ssh's read
// path), so at Go's default it collected 180-263 times per GB received
// (e2e TestMeasureIdle with SHUNT_MEASURE_DOWNLOADS), and took a median
// 3.51 s of CPU per GB against 3.11 s. That was 94-111 collections per GB
// before the inbound pump stopped holding 8 MiB of read buffers from the
// start, which padded the live heap; 200 brings it to 86-127 (3.05 s per
// GB) without them. The heap at rest is no larger (the idle RSS is the
// same at 100 and 200): little is allocated while nothing flows.
const gcPercent = 200

// The soft memory limit (debug.SetMemoryLimit) that keeps the larger
// target from taking memory where the heap is large: flows whose
// applications stopped reading hold up to the flow_memory budget, and
// more arrives before the sweeps reset them; at 200 the garbage on top
// of that grows with it (e2e TestMemoryBudget, 300 stalled flows and a
// 64 MiB budget: a peak RSS of 836 MiB against 498 MiB at 100). Past the
// limit the collector runs as often as it must to stay near it. It is
// far above what shunt holds in normal use (the default budget is an
// eighth of the machine's memory, 128 MiB to 1 GiB: a limit of 640 MiB
// to 4.1 GiB), so it does not bind there; if the live heap alone passed
// it, the runtime bounds the collector to half the CPU. A reload that
// changes flow_memory leaves the limit set at start.
const (
	gcLimitBudgets = 4
	gcLimitBase    = 128 << 20
)

// setGC sets the collector's target to gcPercent and its soft memory
// limit to gcLimitBudgets times budget (flow_memory) plus gcLimitBase,
// unless the GOGC and GOMEMLIMIT environment variables choose. It returns
// the settings in force and whether each came from the environment.
func setGC(getenv func(string) string, budget int64) (percent int, limit int64, percentFromEnv, limitFromEnv bool) {
	if percentFromEnv = getenv("GOGC") != ""; percentFromEnv {
		// The runtime read it at start; setting reads it back.
		percent = debug.SetGCPercent(-1)
		debug.SetGCPercent(percent)
	} else {
		percent = gcPercent
		debug.SetGCPercent(percent)
	}
	if limitFromEnv = getenv("GOMEMLIMIT") != ""; limitFromEnv {
		limit = debug.SetMemoryLimit(-1) // -1 reads it
	} else {
		limit = math.MaxInt64
		if budget > 0 && budget < (math.MaxInt64-gcLimitBase)/gcLimitBudgets {
			limit = gcLimitBudgets*budget + gcLimitBase
		}
		debug.SetMemoryLimit(limit)
	}
	return percent, limit, percentFromEnv, limitFromEnv
}
