package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// DefaultName is the device's name when Options.Name is empty.
const DefaultName = "shunt0"

// CheckName returns a *NameError if Linux would not create a TUN device
// named name: the kernel takes 1 to 15 bytes, not "." or "..", without
// '/', ':' or white space; shunt refuses '%' too (the kernel would pick
// the number).
func CheckName(name string) error { return checkName("linux", name) }

func create(o Options) (wgtun.Device, error) { return wgtun.CreateTUN(o.Name, o.MTU) }
