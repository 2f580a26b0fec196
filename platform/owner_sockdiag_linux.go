package platform

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Finding a flow's owner on Linux takes two steps.
//
// The socket: one NETLINK_SOCK_DIAG request for the exact 4-tuple
// (inet_diag_req_v2 without NLM_F_DUMP, every state) gives the local
// socket's uid and inode. The kernel answers from its connection hash, as
// for an arriving packet, so the cost does not grow with the number of
// sockets. vishvananda/netlink's SocketGet is not used: it opens a netlink
// socket per call and sends a dump request, which the kernel filters by
// port only, walking every socket of the family.
//
// The process: the one holding the socket's inode, found in /proc
// (owner_procfs_linux.go).

const sockDiagTimeout = 2 * time.Second

// TCP states as inet_diag reports them (include/net/tcp_states.h).
const (
	tcpTimeWait   = 6
	tcpListen     = 10
	tcpNewSynRecv = 12
)

// ownerLookup is Linux's Owners: sock_diag for the socket, procfs for
// its process.
type ownerLookup struct {
	log  logrus.FieldLogger
	diag *sockDiag
	*procScan
}

// NewOwners returns the lookup for this OS. It holds a netlink socket and
// a descriptor of /proc until Close.
func NewOwners(log logrus.FieldLogger) (Owners, error) {
	d, err := newSockDiag()
	if err != nil {
		return nil, err
	}
	l, err := newOwnerLookup(log, "/proc", d)
	if err != nil {
		d.Close()
		return nil, err
	}
	return l, nil
}

func newOwnerLookup(log logrus.FieldLogger, proc string, d *sockDiag) (*ownerLookup, error) {
	p, err := newProcScan(proc)
	if err != nil {
		return nil, err
	}
	return &ownerLookup{log: log, diag: d, procScan: p}, nil
}

// Close releases the netlink socket and /proc. Lookups must have ended.
func (l *ownerLookup) Close() error {
	if l.diag != nil {
		l.diag.Close()
	}
	return l.procScan.close()
}

// Lookup finds the owner of the local socket src connected to dst.
func (l *ownerLookup) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
		return Owner{}, err
	}
	if err := ownerCtxErr(ctx, src, dst); err != nil {
		return Owner{}, err
	}
	s, err := l.socket(src, dst)
	if err != nil {
		return Owner{}, err
	}
	o := Owner{UID: s.uid}
	if s.inode == 0 { // closed by its process, still sending
		return o, nil
	}
	id, exe, ok := l.process(ctx, s.uid, s.inode)
	if !ok {
		if err := ownerCtxErr(ctx, src, dst); err != nil {
			return Owner{}, err
		}
		l.log.WithFields(logrus.Fields{"src": src, "dst": dst, "uid": s.uid, "inode": s.inode}).
			Debug("no process holds the local socket of the flow (it exited, or hides its descriptors)")
		return o, nil
	}
	o.PID, o.Exe, o.Name = id.pid, exe.exe, exe.name
	return o, nil
}

// LookupUID finds only the user of the local socket src connected to dst:
// one sock_diag request, no look at /proc (the process is not needed to
// check whose flow it is).
func (l *ownerLookup) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
		return 0, err
	}
	if err := ownerCtxErr(ctx, src, dst); err != nil {
		return 0, err
	}
	s, err := l.socket(src, dst)
	if err != nil {
		return 0, err
	}
	return s.uid, nil
}

// socket asks sock_diag for the local socket of the flow.
func (l *ownerLookup) socket(src, dst netip.AddrPort) (diagSock, error) {
	s, err := l.diag.get(src, dst)
	if errors.Is(err, unix.ENOENT) {
		return s, errNoSocket(src, dst)
	}
	if err != nil {
		return s, fmt.Errorf("owner of %v -> %v: sock_diag: %w", src, dst, err)
	}
	switch s.state {
	case tcpListen, tcpTimeWait, tcpNewSynRecv: // no socket of a process
		return s, errNoSocket(src, dst)
	}
	return s, nil
}

// sockDiag asks the kernel about single sockets over one NETLINK_SOCK_DIAG
// socket, one request at a time.
type sockDiag struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	req [unix.SizeofNlMsghdr + sizeofInetDiagReqV2]byte
	buf []byte
}

const (
	sizeofInetDiagReqV2 = 56 // family, protocol, ext, pad, states, inet_diag_sockid
	sizeofInetDiagMsg   = 72 // family, state, timer, retrans, inet_diag_sockid, expires, rqueue, wqueue, uid, inode
)

func newSockDiag() (*sockDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(sockDiagTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err == nil {
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	}
	if err == nil {
		// Connected to the kernel, so that plain read and write need no
		// address (and allocate none).
		err = unix.Connect(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sock_diag netlink socket: %w", err)
	}
	return &sockDiag{fd: fd, seq: uint32(time.Now().UnixNano()), buf: make([]byte, 16<<10)}, nil
}

func (d *sockDiag) Close() error { return unix.Close(d.fd) }

// diagSock is what Lookup needs of inet_diag_msg.
type diagSock struct {
	state      uint8
	uid, inode uint32
}

// get returns the TCP socket with local address src and remote dst, or
// unix.ENOENT. Both must be of one family, unmapped.
func (d *sockDiag) get(src, dst netip.AddrPort) (diagSock, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	ne := binary.NativeEndian
	r := d.req[:]
	clear(r)
	ne.PutUint32(r[0:], uint32(len(r)))
	ne.PutUint16(r[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(r[6:], unix.NLM_F_REQUEST) // no NLM_F_DUMP: an exact lookup
	ne.PutUint32(r[8:], d.seq)
	q := r[unix.SizeofNlMsghdr:]
	q[0] = unix.AF_INET6
	if src.Addr().Is4() {
		q[0] = unix.AF_INET
	}
	q[1] = unix.IPPROTO_TCP
	ne.PutUint32(q[4:], ^uint32(0)) // every state
	binary.BigEndian.PutUint16(q[8:], src.Port())
	binary.BigEndian.PutUint16(q[10:], dst.Port())
	putDiagAddr(q[12:28], src.Addr())
	putDiagAddr(q[28:44], dst.Addr())
	ne.PutUint32(q[48:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	ne.PutUint32(q[52:], ^uint32(0))

	for {
		_, err := unix.Write(d.fd, r)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return diagSock{}, err
		}
		break
	}
	for {
		n, err := unix.Read(d.fd, d.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return diagSock{}, fmt.Errorf("no answer from the kernel in %v", sockDiagTimeout)
		case err != nil:
			return diagSock{}, err
		}
		for b := d.buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(ne.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return diagSock{}, errors.New("malformed netlink message")
			}
			typ, seq, m := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[unix.SizeofNlMsghdr:l]
			b = b[min(len(b), (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
			if seq != d.seq {
				continue // the late answer to a request that timed out
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(m) < 4 {
					return diagSock{}, errors.New("malformed netlink error")
				}
				if e := int32(ne.Uint32(m)); e != 0 {
					return diagSock{}, unix.Errno(-e)
				}
			case unix.NLMSG_DONE:
				return diagSock{}, unix.ENOENT
			case unix.SOCK_DIAG_BY_FAMILY:
				return parseDiagMsg(m, src, dst)
			}
		}
	}
}

func putDiagAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		a4 := a.As4()
		copy(b, a4[:])
		return
	}
	a16 := a.As16()
	copy(b, a16[:])
}

// parseDiagMsg reads an inet_diag_msg, and checks that it is the socket
// asked for: where no connection matches, the kernel answers with a
// listener on the port.
func parseDiagMsg(m []byte, src, dst netip.AddrPort) (diagSock, error) {
	if len(m) < sizeofInetDiagMsg {
		return diagSock{}, errors.New("short inet_diag message")
	}
	var s, d netip.Addr
	if m[0] == unix.AF_INET {
		s, d = netip.AddrFrom4([4]byte(m[8:12])), netip.AddrFrom4([4]byte(m[24:28]))
	} else { // an IPv6 socket reports IPv4 connections with mapped addresses
		s, d = netip.AddrFrom16([16]byte(m[8:24])).Unmap(), netip.AddrFrom16([16]byte(m[24:40])).Unmap()
	}
	be := binary.BigEndian
	if netip.AddrPortFrom(s, be.Uint16(m[4:])) != src || netip.AddrPortFrom(d, be.Uint16(m[6:])) != dst {
		return diagSock{}, unix.ENOENT
	}
	ne := binary.NativeEndian
	return diagSock{state: m[1], uid: ne.Uint32(m[64:]), inode: ne.Uint32(m[68:])}, nil
}
