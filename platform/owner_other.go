//go:build !linux

package platform

import "github.com/sirupsen/logrus"

// NewOwnerLookup is not supported on this system yet.
func NewOwnerLookup(logrus.FieldLogger) (OwnerLookup, error) { return nil, ErrNotSupported }
