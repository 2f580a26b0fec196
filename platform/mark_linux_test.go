package platform

import "golang.org/x/sys/unix"

func getsockoptMark(fd int) (int, error) {
	return unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK)
}
