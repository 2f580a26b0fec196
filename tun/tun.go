// Package tun provides the packet device that shunt captures flows from: a real
// TUN device (wireguard-go's, wintun on Windows) or an in-memory one for tests.
package tun

import (
	"fmt"

	wgtun "golang.zx2c4.com/wireguard/tun"
)

// Device moves batches of raw IP packets (no link header). It is the part of
// wireguard-go's tun.Device that shunt uses, so any wireguard device fits.
type Device interface {
	// Read reads one or more packets into bufs, starting at offset in each
	// buffer, and records each packet's length in sizes. It returns the number
	// of packets read. len(sizes) must be >= len(bufs), and len(bufs) should be
	// BatchSize(). Every buffer must hold offset+MTU bytes at least; the
	// offset bytes in front of the packet are scratch space for the device
	// and must be at least Headroom.
	Read(bufs [][]byte, sizes []int, offset int) (int, error)

	// Write writes the packets bufs[i][offset:]. The offset bytes in front of
	// each packet are scratch space for the device (offload headers), and
	// must be at least Headroom. The device may modify the buffers (to
	// coalesce segments) but keeps no reference to them after it returns.
	Write(bufs [][]byte, offset int) (int, error)

	// BatchSize is the largest number of packets one Read or Write handles.
	// It does not change over the device's lifetime.
	BatchSize() int

	// MTU is the device's current MTU.
	MTU() (int, error)

	// Name is the operating system's name of the device.
	Name() (string, error)

	// Close closes the device. Pending and later Reads return an error.
	Close() error
}

// Headroom is the space a caller must leave in front of every packet passed
// to Read and Write (wireguard-go's virtio-net header on Linux is 10 bytes;
// 16 keeps packets aligned).
const Headroom = 16

// Open creates the TUN device name with the given MTU. On Linux it enables
// TSO/GRO offloads through the virtio-net header: the kernel hands over
// whole GSO packets, without finishing their checksums, and one Write can
// hand the kernel coalesced segments. Read then returns each packet as the
// kernel gave it (see directReader): the stack reading it must not verify
// transport checksums.
func Open(name string, mtu int) (Device, error) {
	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("create TUN device %q: %w", name, err)
	}
	// wireguard's device reports link state changes on a small buffered
	// channel; nobody here needs them, but an unread channel would stall its
	// netlink listener. Drain it until Close closes it.
	go func() {
		for range dev.Events() {
		}
	}()
	return fastRead(dev), nil
}
