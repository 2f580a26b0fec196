//go:build !linux

package platform

// KeepCapabilities does nothing here and reports nothing kept:
// capabilities are Linux's, and the other systems have no such split of
// root's power, so shunt keeps the privileges it was started with.
func KeepCapabilities([]Capability) (KeptCapabilities, error) {
	return KeptCapabilities{}, nil
}
