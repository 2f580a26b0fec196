package platform

import (
	"fmt"
	"slices"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// KeepCapabilities drops every capability but keep, in every thread of the
// process: the effective and permitted sets become keep (those of them
// the process has), the bounding set too, so that no program shunt starts
// regains the others on exec as root, and the inheritable and ambient
// sets become empty, so that none passes any on. It cannot be undone.
//
// libcap's cap package does it, through psx: a capability set belongs to
// a thread, and a Go process runs on many, which unix.Capset alone (the
// calling thread) would leave capable.
func KeepCapabilities(keep []Capability) (KeptCapabilities, error) {
	var out KeptCapabilities
	have := cap.GetProc()
	var kept []cap.Value
	for _, c := range keep {
		if ok, err := have.GetFlag(cap.Permitted, cap.Value(c)); err == nil && ok {
			kept = append(kept, cap.Value(c))
			out.Kept = append(out.Kept, c)
		} else {
			out.Missing = append(out.Missing, c)
		}
	}
	canBound, _ := have.GetFlag(cap.Permitted, cap.SETPCAP)
	iab := cap.IABInit() // no inheritable, no ambient
	if canBound {
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if slices.Contains(kept, v) {
				continue
			}
			if in, err := cap.GetBound(v); err == nil && in {
				if err := iab.SetVector(cap.Bound, true, v); err != nil {
					return out, fmt.Errorf("capabilities: %w", err)
				}
			}
		}
	} else {
		// Without CAP_SETPCAP the bounding set stays as the service
		// manager left it; the other sets still shrink.
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if in, err := cap.GetBound(v); err == nil && in && !slices.Contains(kept, v) {
				out.BoundKept = true
				break
			}
		}
	}
	if err := iab.SetProc(); err != nil {
		return out, fmt.Errorf("capabilities: narrowing the bounding, inheritable and ambient sets: %w", err)
	}
	set := cap.NewSet()
	if len(kept) > 0 {
		if err := set.SetFlag(cap.Permitted, true, kept...); err != nil {
			return out, fmt.Errorf("capabilities: %w", err)
		}
		if err := set.SetFlag(cap.Effective, true, kept...); err != nil {
			return out, fmt.Errorf("capabilities: %w", err)
		}
	}
	if err := set.SetProc(); err != nil {
		return out, fmt.Errorf("capabilities: dropping the others: %w", err)
	}
	return out, nil
}
