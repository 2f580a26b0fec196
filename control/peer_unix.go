//go:build linux || darwin || freebsd

package control

import (
	"fmt"
	"net"
)

// sockopt runs get on c's descriptor: how peerOf reads the kernel's
// record of who connected. what names the option in the error.
func sockopt[T any](c *net.UnixConn, what string, get func(fd int) (T, error)) (T, error) {
	var v, zero T
	raw, err := c.SyscallConn()
	if err != nil {
		return zero, err
	}
	var getErr error
	if err := raw.Control(func(fd uintptr) { v, getErr = get(int(fd)) }); err != nil {
		return zero, err
	}
	if getErr != nil {
		return zero, fmt.Errorf("reading the peer's credentials (%s): %w", what, getErr)
	}
	return v, nil
}
