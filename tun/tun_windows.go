package tun

import (
	"golang.org/x/sys/windows"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// DefaultName is the adapter's name when Options.Name is empty.
const DefaultName = "shunt"

// CheckName returns a *NameError if Windows would not create an adapter
// named name: 1 to 127 UTF-16 code units, none of \ / : * ? " < > | or a
// control character, no space at either end.
func CheckName(name string) error { return checkName("windows", name) }

// create loads (and checks) wintun.dll and creates the adapter with the
// GUID asked for, or the one derived from its name.
func create(o Options) (wgtun.Device, error) {
	g, err := adapterGUID(o.Name, o.GUID)
	if err != nil {
		return nil, err
	}
	if err := loadWintun(); err != nil {
		return nil, err
	}
	wg := windows.GUID{Data1: g.Data1, Data2: g.Data2, Data3: g.Data3, Data4: g.Data4}
	return wgtun.CreateTUNWithRequestedGUID(o.Name, &wg, o.MTU)
}
