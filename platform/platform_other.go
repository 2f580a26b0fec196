//go:build !linux && !darwin && !windows

package platform

import "github.com/sirupsen/logrus"

// Prepare is not supported on this system yet.
func Prepare(Config, logrus.FieldLogger) error { return ErrNotSupported }

// OpenCapture is not supported on this system yet.
func OpenCapture(Config, logrus.FieldLogger) (Capture, error) { return nil, ErrNotSupported }

// CleanUp is not supported on this system yet.
func CleanUp(Config) ([]string, error) { return nil, ErrNotSupported }

// KillSwitchRoutes is not supported on this system yet.
func KillSwitchRoutes(Config) ([]string, error) { return nil, ErrNotSupported }
