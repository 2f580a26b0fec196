package platform

import (
	"errors"

	"github.com/sirupsen/logrus"
	"golang.zx2c4.com/wireguard/windows/tunnel/winipcfg"
)

// WatchNetwork follows Windows' change notifications of routes,
// interfaces and unicast addresses, and tells o.OnChange when the primary
// interface of a family or an interface's address changed
// (watchSnapshots). shunt's adapter is left out; o.Table means nothing
// here.
func WatchNetwork(o NetWatchOptions) (*NetWatcher, error) {
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	ip := winipcfgHelper{}
	subscribe := func(changed func()) (func() error, error) {
		stopRoutes, err := ip.WatchRoutes(changed)
		if err != nil {
			return nil, err
		}
		acb, err := winipcfg.RegisterUnicastAddressChangeCallback(func(winipcfg.MibNotificationType, *winipcfg.MibUnicastIPAddressRow) { changed() })
		if err != nil {
			stopRoutes()
			return nil, err
		}
		return func() error { return errors.Join(acb.Unregister(), stopRoutes()) }, nil
	}
	return watchSnapshots(o, subscribe, func() (netSnapshot, bool) {
		routes, err := ip.DefaultRoutes()
		if err != nil {
			o.Log.WithError(err).Debug("watching the network: reading the default routes")
			return netSnapshot{}, false
		}
		primary := func(v6 bool) primaryIf {
			if r, ok := pickPrimary(routes, v6); ok {
				return primaryIf{Index: int(r.Index), Name: r.Alias}
			}
			return primaryIf{}
		}
		return newSnapshot(primary(false), primary(true), interfaceAddrs(), o.Device), true
	})
}
