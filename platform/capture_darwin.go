package platform

import (
	"net"
	"os/exec"

	"github.com/sirupsen/logrus"
)

// execRunner runs route(8), ifconfig(8) and scutil(8) by their absolute
// paths: shunt runs as root, and its PATH is not to be trusted.
type execRunner struct{}

func (execRunner) run(args ...string) ([]byte, error) {
	path := "/sbin/" + args[0]
	if args[0] == "scutil" {
		path = "/usr/sbin/scutil"
	}
	return exec.Command(path, args[1:]...).CombinedOutput()
}

// Prepare runs before the utun is created. It refuses a utun unit in use
// (tun.name utunN when that device exists). A crashed run leaves nothing
// to remove: its utun went with its process, and its addresses and
// routes with the utun (capture_macos.go).
func Prepare(cfg Config, _ logrus.FieldLogger) error {
	return prepareUTUN(cfg, func(name string) bool {
		_, err := net.InterfaceByName(name)
		return err == nil
	})
}

// OpenCapture gives the utun its addresses, brings it up and routes
// cfg.Routes to it (capture_macos.go). There is no kill switch on macOS
// yet: cfg.KillSwitch is refused.
func OpenCapture(cfg Config, log logrus.FieldLogger) (Capture, error) {
	return openUTUNCapture(cfg, execRunner{}, log)
}

// CleanUp has nothing to remove on macOS: the routes and addresses of a
// utun go with it, and there is no kill switch.
func CleanUp(Config) ([]string, error) { return nil, nil }

// KillSwitchRoutes: macOS has no kill switch yet, so none of its routes.
func KillSwitchRoutes(Config) ([]string, error) { return nil, nil }
