//go:build !linux && !darwin && !windows

package tun

import (
	"runtime"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// DefaultName is the device's name when Options.Name is empty.
const DefaultName = "shunt0"

// CheckName returns a *NameError if this OS would not create a TUN device
// named name (the BSDs: 1 to 15 bytes, no '/', ':' or white space).
func CheckName(name string) error { return checkName(runtime.GOOS, name) }

func create(o Options) (wgtun.Device, error) { return wgtun.CreateTUN(o.Name, o.MTU) }
