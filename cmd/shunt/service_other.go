//go:build !windows

package main

// runService runs nothing here: systemd and launchd start shunt daemon as
// a plain process (systemd.go speaks to systemd).
func runService(func(*serviceHooks) int) (code int, ok bool) { return 0, false }
