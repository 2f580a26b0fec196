package main

import "runtime"

// limitProcs runs Go code on half the CPUs the process may use (at least
// one), unless the GOMAXPROCS environment variable chooses. It returns the
// setting in force and whether it came from the environment.
//
// shunt shares the machine with the applications whose traffic it carries,
// and with the kernel work of their sockets and of the TUN. Its data path
// is a short pipeline (the SSH reader, the splice, the TUN writer): with a P
// for every CPU, each hand-off along it can wake an idle thread on another
// CPU, which spins looking for work the pipeline's next stage already has.
// On a 2-core machine one P made every benchmark row better or equal
// (README, Performance): client CPU per GB forward 1.42× → 1.24× of
// ssh -L's, reverse 2.33× → 1.97×, reverse throughput 0.93× → 1.00×, four
// streams 0.87× → 0.95×, new-flow p50 1.51× → 1.26×.
func limitProcs(getenv func(string) string) (procs int, fromEnv bool) {
	if getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0), true
	}
	n := max(1, runtime.GOMAXPROCS(0)/2)
	runtime.GOMAXPROCS(n)
	return n, false
}
