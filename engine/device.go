package engine

import (
	"errors"
	"fmt"
	"net"
)

// ErrDeviceRemoved: the TUN device was deleted from outside shunt (ip
// link del). DeviceFailed's error matches it (errors.Is).
var ErrDeviceRemoved = errors.New("TUN device removed from outside shunt")

// deviceRemoved says which device was removed.
type deviceRemoved struct{ name string }

func (d deviceRemoved) Error() string {
	return fmt.Sprintf("the TUN device %s was removed from outside shunt (ip link del?)", d.name)
}

func (d deviceRemoved) Is(target error) bool { return target == ErrDeviceRemoved }

// DeviceName is the TUN device's name as the OS gave it (on macOS utunN,
// whatever tun.name said), once Start has opened it; "" before, or
// without a TUN.
func (e *Engine) DeviceName() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.devName
}

// DeviceFailed explains err, the device's failure from Err: when the
// device no longer exists, that it was removed from outside shunt
// (ErrDeviceRemoved), else that it failed, and why. Stop then removes the
// routes and policy rules as ever.
func (e *Engine) DeviceFailed(err error) error {
	e.mu.Lock()
	name := e.devName
	e.mu.Unlock()
	if name != "" && e.osCapture != nil {
		if _, lerr := net.InterfaceByName(name); lerr != nil {
			return deviceRemoved{name}
		}
	}
	return fmt.Errorf("TUN device failed: %w", err)
}
