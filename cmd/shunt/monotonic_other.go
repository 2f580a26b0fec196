//go:build !linux

package main

// monotonicUsec: systemd runs only on Linux.
func monotonicUsec() int64 { return 0 }
