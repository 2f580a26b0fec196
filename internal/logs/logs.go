// Package logs holds what the data path's packages share about logging.
package logs

import "github.com/sirupsen/logrus"

// Enabled tells whether log would write at level (true when it cannot
// tell): a message that would not be written need not be built, and on
// the data path its fields should not even be allocated.
func Enabled(log logrus.FieldLogger, level logrus.Level) bool {
	switch l := log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(level)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(level)
	}
	return true
}
