package platform

import "fmt"

// Capability is a Linux capability, by its number in linux/capability.h.
// The type exists on every OS so that the engine can say what it would
// keep; only Linux acts on it (KeepCapabilities).
type Capability uint

// The capabilities shunt may keep once set up. The others it never needs
// after the set-up, whatever the configuration.
const (
	CapChown         Capability = 0
	CapDACOverride   Capability = 1
	CapDACReadSearch Capability = 2
	CapNetAdmin      Capability = 12
	CapSysPtrace     Capability = 19
)

var capNames = map[Capability]string{
	CapChown:         "CAP_CHOWN",
	CapDACOverride:   "CAP_DAC_OVERRIDE",
	CapDACReadSearch: "CAP_DAC_READ_SEARCH",
	CapNetAdmin:      "CAP_NET_ADMIN",
	CapSysPtrace:     "CAP_SYS_PTRACE",
}

// String is the capability's name as capabilities(7) and systemd's
// CapabilityBoundingSet= write it.
func (c Capability) String() string {
	if n, ok := capNames[c]; ok {
		return n
	}
	return fmt.Sprintf("CAP_%d", uint(c))
}

// KeptCapabilities is what KeepCapabilities did.
type KeptCapabilities struct {
	// Kept are the capabilities asked for that the process had: the
	// effective, permitted and bounding sets hold these and no others.
	Kept []Capability
	// Missing are the capabilities asked for that the process did not
	// have (a service manager withheld them): what needs them fails.
	Missing []Capability
	// BoundKept is set when the bounding set could not be narrowed (no
	// CAP_SETPCAP): programs shunt starts (SSH_ASKPASS) as root may
	// then gain the capabilities the bounding set still holds, though
	// shunt itself has dropped them.
	BoundKept bool
}
