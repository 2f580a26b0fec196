//go:build !linux && !darwin && !windows

package platform

// WatchNetwork watches nothing here: only Linux's netlink, macOS's routing
// socket and Windows' notifications are read. The keepalives and the clock
// watch still notice broken connections.
func WatchNetwork(NetWatchOptions) (*NetWatcher, error) { return &NetWatcher{}, nil }
