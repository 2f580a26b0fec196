//go:build !linux

package platform

import (
	"net/netip"
	"syscall"

	"github.com/sirupsen/logrus"
)

// Network is the host state shunt installed.
type Network struct{}

func markControl(uint32) func(network, address string, c syscall.RawConn) error { return nil }

// Prepare is not supported on this system yet.
func Prepare(Config, logrus.FieldLogger) error { return ErrNotSupported }

// Setup is not supported on this system yet.
func Setup(Config, logrus.FieldLogger) (*Network, error) { return nil, ErrNotSupported }

// SetRoutes is not supported on this system yet.
func (*Network) SetRoutes([]netip.Prefix) error { return ErrNotSupported }

// Close does nothing.
func (*Network) Close() error { return nil }

// SetKillSwitch is not supported on this system yet.
func (*Network) SetKillSwitch(bool, []netip.Addr) error { return ErrNotSupported }

// CleanUp is not supported on this system yet.
func CleanUp(Config) ([]string, error) { return nil, ErrNotSupported }

// KillSwitchRoutes is not supported on this system yet.
func KillSwitchRoutes(Config) ([]string, error) { return nil, ErrNotSupported }
