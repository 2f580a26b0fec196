package platform

// WatchNetwork follows the routing socket and tells o.OnChange when the
// primary interface of a family or an interface's address changed
// (watchSnapshots). shunt's device is left out; o.Table means nothing
// here.
func WatchNetwork(o NetWatchOptions) (*NetWatcher, error) {
	subscribe := func(changed func()) (func() error, error) {
		f, err := openRoutingSocket()
		if err != nil {
			return nil, err
		}
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			followRoutes(f.Read, changed, o.Log, "changes of the network are")
		}()
		return func() error {
			err := f.Close()
			<-finished
			return err
		}, nil
	}
	return watchSnapshots(o, subscribe, func() (netSnapshot, bool) {
		p4, p6, err := fetchPrimary()
		if err != nil {
			if o.Log != nil {
				o.Log.WithError(err).Debug("watching the network: reading the routing table")
			}
			return netSnapshot{}, false
		}
		return newSnapshot(p4, p6, interfaceAddrs(), o.Device), true
	})
}
