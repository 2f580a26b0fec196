package platform

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// markBypass marks each socket (SO_MARK): the capture's policy rule
// ("not fwmark M lookup T") lets marked packets through to the main table.
type markBypass struct{ mark uint32 }

func newOSBypass(o BypassOptions) (osBypass, error) { return markBypass{o.Mark}, nil }

func (m markBypass) control(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(m.mark))
	})
	if err == nil && serr != nil {
		err = fmt.Errorf("set SO_MARK (needs CAP_NET_ADMIN): %w", serr)
	}
	return err
}

func (markBypass) close() error { return nil }
