//go:build !linux

package router

import "time"

// systemConnectTimeout elsewhere is a fixed guess in the range of what
// those kernels give a connect (Windows about 21 s, macOS 75 s).
func systemConnectTimeout() (time.Duration, string) {
	return DefaultDialTimeout, "this system's usual connect timeout"
}
