//go:build !linux

package platform

// WatchNetwork watches nothing here: only Linux's netlink is read. The
// keepalives and the clock watch still notice broken connections.
func WatchNetwork(NetWatchOptions) (*NetWatcher, error) { return &NetWatcher{}, nil }
