// Package tun provides the packet device that shunt captures flows from: a real
// TUN device (wireguard-go's, wintun on Windows) or an in-memory one for tests.
package tun

import "fmt"

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

// Options say which TUN device Open creates.
type Options struct {
	// Name is the device's name; "" means DefaultName. What each OS takes
	// (CheckName): Linux any valid interface name (at most 15 bytes);
	// macOS "utun", whose number the kernel picks, or "utunN"; Windows the
	// adapter's name (its connection's name in Network Connections).
	Name string
	// MTU is the device's MTU; 0 leaves the OS's (wireguard-go's) default.
	MTU int
	// GUID is, on Windows only, the adapter's GUID, e.g.
	// {21c32afe-b213-437b-9925-9c9413d572d8}: Windows keys the network
	// profile (private or public, and the firewall rules with it) to it,
	// so it must be the same on every run. "" means one derived from Name
	// (the same for the same name, on every machine). Other OSes ignore it.
	GUID string
}

// Open creates the TUN device o describes and returns it with the name the
// OS gave it, which is authoritative: on macOS, "utun" becomes utunN with
// the number the kernel chose. It refuses a name the OS does not take
// (CheckName) before it changes anything. On Windows it first loads
// wintun.dll, from beside the executable, after checking its signature
// (see loadWintun).
//
// On Linux it enables TSO/GRO offloads through the virtio-net header: the
// kernel hands over whole GSO packets, without finishing their checksums,
// and one Write can hand the kernel coalesced segments. Read then returns
// each packet as the kernel gave it (see directReader): the stack reading
// it must not verify transport checksums.
func Open(o Options) (Device, string, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if err := CheckName(o.Name); err != nil {
		return nil, "", err
	}
	dev, err := create(o)
	if err != nil {
		return nil, "", fmt.Errorf("create TUN device %q: %w", o.Name, err)
	}
	// wireguard's device reports link state changes on a small buffered
	// channel; nobody here needs them, but an unread channel would stall its
	// netlink listener. Drain it until Close closes it.
	go func() {
		for range dev.Events() {
		}
	}()
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, "", fmt.Errorf("read the name of the TUN device created as %q: %w", o.Name, err)
	}
	return fastRead(dev), name, nil
}
