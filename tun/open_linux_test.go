package tun

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/shunt-dev/shunt/internal/testns"
)

// TestOpen creates real TUN devices: the default name, a given one, and a
// refused one, which must leave no device behind.
func TestOpen(t *testing.T) {
	testns.Run(t, func() {
		dev, name, err := Open(Options{MTU: 1500})
		if err != nil {
			t.Fatal(err)
		}
		defer dev.Close()
		if name != DefaultName {
			t.Errorf("Open with no name: the device is %q, want %q", name, DefaultName)
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("the device Open named %q: %v", name, err)
		}
		if mtu := link.Attrs().MTU; mtu != 1500 {
			t.Errorf("MTU %d, want 1500", mtu)
		}

		dev2, name2, err := Open(Options{Name: "shtest1", MTU: 9000})
		if err != nil {
			t.Fatal(err)
		}
		defer dev2.Close()
		if n, err := dev2.Name(); name2 != "shtest1" || n != name2 || err != nil {
			t.Errorf("Open(shtest1) reports %q, Name() %q, %v", name2, n, err)
		}

		before, _ := netlink.LinkList()
		for _, bad := range []string{"shunt%d", "a/b", "much-too-long-name"} {
			d, n, err := Open(Options{Name: bad, MTU: 1500})
			var ne *NameError
			if !errors.As(err, &ne) || d != nil || n != "" {
				t.Errorf("Open(%q) = %v, %q, %v; want a *NameError and nothing", bad, d, n, err)
				if d != nil {
					d.Close()
				}
			}
		}
		if after, _ := netlink.LinkList(); len(after) != len(before) {
			t.Errorf("refused names left devices: %d links before, %d after", len(before), len(after))
		}
	})
}
