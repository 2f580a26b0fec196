package broker

import (
	"net"

	"golang.org/x/sys/unix"
)

// quickAck asks the kernel to acknowledge what arrives on c at once. sshd
// leaves Nagle on for non-interactive connections, so its small packets
// (a channel-open confirmation, a short answer) wait for our ACK of the
// previous one, which Linux delays up to 40 ms when we have nothing to
// send. Linux drops quick-ack mode on its own, so it is set after each
// read.
func quickAck(c net.Conn) {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
	})
}
