//go:build !linux && !darwin

package platform

// WatchNetwork watches nothing here: only Linux's netlink and macOS's
// routing socket are read. The keepalives and the clock watch still notice
// broken connections.
func WatchNetwork(NetWatchOptions) (*NetWatcher, error) { return &NetWatcher{}, nil }
