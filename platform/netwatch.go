package platform

import (
	"time"

	"github.com/sirupsen/logrus"
)

// NetWatchOptions configure WatchNetwork.
type NetWatchOptions struct {
	// Device is shunt's TUN device: its addresses and routes are shunt's
	// own, never a change of the network.
	Device string
	// Table is shunt's routing table (Config.Table): its routes are
	// shunt's own too. 0 means DefaultTable.
	Table int
	// Debounce gathers the changes that come together (a new DHCP lease
	// brings an address and a route) into one call of OnChange, made
	// once no change has come for that long. 0 means DefaultDebounce.
	Debounce time.Duration
	// OnChange is told of a change that may have broken connections: a
	// default route added or removed, an address added to or removed
	// from an interface. reason says which, in a few words. It is
	// called from the watcher's goroutine, one call at a time.
	OnChange func(reason string)
	// Log gets a line if the watch fails; nil means logrus's standard
	// logger.
	Log logrus.FieldLogger
}

// DefaultDebounce is NetWatchOptions.Debounce's default.
const DefaultDebounce = 500 * time.Millisecond

// NetWatcher watches the machine's routes and addresses until Close.
type NetWatcher struct {
	close func()
}

// Close stops watching and waits until OnChange is no longer called.
func (w *NetWatcher) Close() error {
	if w != nil && w.close != nil {
		w.close()
	}
	return nil
}
