package platform

import "github.com/sirupsen/logrus"

// Windows capture: the TUN's addresses and routes through the IP Helper
// API (winip.go decides, winip_windows.go calls).

// Prepare runs before the TUN is created: it refuses an adapter name in
// use (another shunt), and the kill switch, which Windows has not yet.
// Nothing of a crashed run is left to remove: its routes went with its
// adapter.
func Prepare(cfg Config, _ logrus.FieldLogger) error { return winPrepare(winipcfgHelper{}, cfg) }

// OpenCapture gives the TUN adapter (found by its name, cfg.Device) its
// addresses, metric and IP MTU (cfg.MTU: wintun's adapter does not take
// the device's), and routes cfg.Routes to it.
func OpenCapture(cfg Config, log logrus.FieldLogger) (Capture, error) {
	c, err := openWinCapture(winipcfgHelper{}, cfg, uint32(cfg.MTU), log)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// CleanUp has nothing to remove: shunt's routes live only as long as its
// adapter, which wintun removes when the process ends, even by a crash;
// and there is no kill switch.
func CleanUp(Config) ([]string, error) { return nil, nil }

// KillSwitchRoutes lists nothing: Windows has no kill switch yet.
func KillSwitchRoutes(Config) ([]string, error) { return nil, nil }
