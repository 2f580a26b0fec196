package platform

import "golang.org/x/sys/windows"

// newOSBypass binds shunt's sockets to the primary interface
// (IP_UNICAST_IF, IPV6_UNICAST_IF), following the default routes
// (winbypass.go).
func newOSBypass(o BypassOptions) (osBypass, error) {
	return newWinBypass(winipcfgHelper{}, func(fd uintptr, level, name, value int) error {
		return windows.SetsockoptInt(windows.Handle(fd), level, name, value)
	}, o.Log)
}
