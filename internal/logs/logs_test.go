package logs

import (
	"testing"

	"github.com/sirupsen/logrus"
)

type other struct{ logrus.FieldLogger }

func TestEnabled(t *testing.T) {
	l := logrus.New()
	l.Level = logrus.InfoLevel
	if !Enabled(l, logrus.WarnLevel) || Enabled(l, logrus.DebugLevel) {
		t.Error("logger: warn should be on, debug off")
	}
	if e := l.WithField("a", 1); !Enabled(e, logrus.InfoLevel) || Enabled(e, logrus.DebugLevel) {
		t.Error("entry: info should be on, debug off")
	}
	if !Enabled(other{l}, logrus.TraceLevel) {
		t.Error("an unknown logger: assume on")
	}
}
