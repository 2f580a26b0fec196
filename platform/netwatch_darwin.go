package platform

import "github.com/sirupsen/logrus"

// WatchNetwork follows the routing socket and tells o.OnChange when the
// primary interface of a family or an interface's address changed
// (watchSnapshots). shunt's device is left out; o.Table means nothing
// here.
func WatchNetwork(o NetWatchOptions) (*NetWatcher, error) {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	subscribe := func(changed func()) (func() error, error) {
		return followRoutingSocket(changed, o.Log, "changes of the network are")
	}
	return watchSnapshots(o, subscribe, func() (netSnapshot, bool) {
		p4, p6, err := fetchPrimary()
		if err != nil {
			o.Log.WithError(err).Debug("watching the network: reading the routing table")
			return netSnapshot{}, false
		}
		return newSnapshot(p4, p6, interfaceAddrs(), o.Device), true
	})
}
