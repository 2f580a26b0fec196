//go:build !linux && !darwin && !windows

package platform

// Where shunt captures nothing (no capture on this system yet), nothing
// needs bypassing it.
func newOSBypass(BypassOptions) (osBypass, error) { return plainBypass{}, nil }
