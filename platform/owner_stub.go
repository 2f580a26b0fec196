//go:build !linux && !darwin && !windows

package platform

import "github.com/sirupsen/logrus"

// NewOwners is not supported on this system: flows cannot be traced to
// processes (rules naming applications or users cannot be used).
func NewOwners(logrus.FieldLogger) (Owners, error) { return nil, ErrNotSupported }
