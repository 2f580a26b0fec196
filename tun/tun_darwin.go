package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// DefaultName is the device's name when Options.Name is empty: the kernel
// picks the number of the utun device (Open returns it).
const DefaultName = "utun"

// CheckName returns a *NameError if macOS would not create a TUN device
// named name: it takes "utun" (the kernel picks N) or "utunN".
func CheckName(name string) error { return checkName("darwin", name) }

func create(o Options) (wgtun.Device, error) { return wgtun.CreateTUN(o.Name, o.MTU) }
