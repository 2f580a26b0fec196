package platform

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

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
// The process: the one with an fd linking to "socket:[INODE]" in
// /proc/PID/fd. The processes that owned the latest flows are searched
// first (applications open flows in bursts), then all of /proc, one full
// scan at a time, the processes of the socket's user first. Results
// are cached under the PID and the process's start time, since PIDs are
// reused. The scan builds its paths in reused buffers and allocates
// nothing.

const (
	ownerCacheInodes = 4096 // socket inode → process
	ownerCacheProcs  = 1024 // process → executable
	ownerRecent      = 8    // processes searched before all of /proc
	sockDiagTimeout  = 2 * time.Second
)

// TCP states as inet_diag reports them (include/net/tcp_states.h).
const (
	tcpTimeWait   = 6
	tcpListen     = 10
	tcpNewSynRecv = 12
)

// procID names a process for good: a PID and when the process started
// (field 22 of /proc/PID/stat, in clock ticks since boot).
type procID struct {
	pid   int
	start uint64
}

type procExe struct {
	start     uint64
	exe, name string
}

type ownerLookup struct {
	log    logrus.FieldLogger
	diag   *sockDiag
	proc   string // where procfs is mounted
	procfd int

	scanMu sync.Mutex // held by a full scan

	mu     sync.Mutex // guards what follows
	inodes map[uint32]procID
	procs  map[int]procExe
	recent [ownerRecent]int // PIDs, latest first; 0 is empty
	bufs   sync.Pool        // *scanBuf
}

// NewOwnerLookup returns the lookup for this OS. It holds a netlink socket
// and a descriptor of /proc for its lifetime; Close (on the concrete type,
// through io.Closer) releases them.
func NewOwnerLookup(log logrus.FieldLogger) (OwnerLookup, error) {
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
	fd, err := unix.Open(proc, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", proc, err)
	}
	l := &ownerLookup{
		log:    log,
		diag:   d,
		proc:   proc,
		procfd: fd,
		inodes: make(map[uint32]procID),
		procs:  make(map[int]procExe),
	}
	l.bufs.New = func() any { return newScanBuf() }
	return l, nil
}

// Close releases the netlink socket and /proc. Lookups must have ended.
func (l *ownerLookup) Close() error {
	if l.diag != nil {
		l.diag.Close()
	}
	return unix.Close(l.procfd)
}

// Lookup finds the owner of the local socket src connected to dst.
func (l *ownerLookup) Lookup(src, dst netip.AddrPort) (Owner, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
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
	id, exe, ok := l.process(s.uid, s.inode)
	if !ok {
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
func (l *ownerLookup) LookupUID(src, dst netip.AddrPort) (uint32, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
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

// process finds the process holding socket inode, and its executable.
// uid, the socket's, chooses which processes the full scan searches first.
func (l *ownerLookup) process(uid, inode uint32) (procID, procExe, bool) {
	b := l.bufs.Get().(*scanBuf)
	defer l.bufs.Put(b)
	b.target = append(strconv.AppendUint(append(b.target[:0], "socket:["...), uint64(inode), 10), ']')

	l.mu.Lock()
	id, cached := l.inodes[inode]
	l.mu.Unlock()
	if cached {
		if start, ok := b.startTime(l.procfd, id.pid); ok && start == id.start {
			if exe, ok := l.exe(b, id); ok {
				return id, exe, true
			}
		}
		l.forget(inode, id.pid)
	}
	tried, pid := l.searchRecent(b, nil)
	if pid == 0 {
		// One full scan at a time: a new application opens several flows
		// at once, and the lookups after the first find it among the
		// recent processes.
		l.scanMu.Lock()
		defer l.scanMu.Unlock()
		if tried, pid = l.searchRecent(b, &tried); pid == 0 {
			pid = l.scanAll(b, uid, &tried)
		}
	}
	if pid == 0 {
		return procID{}, procExe{}, false
	}
	start, ok := b.startTime(l.procfd, pid)
	if !ok {
		return procID{}, procExe{}, false
	}
	id = procID{pid: pid, start: start}
	exe, ok := l.exe(b, id)
	if !ok {
		return procID{}, procExe{}, false
	}
	l.remember(inode, id)
	return id, exe, true
}

// searchRecent searches the recent processes, but those in skip, and
// returns them with the one holding the socket.
func (l *ownerLookup) searchRecent(b *scanBuf, skip *[ownerRecent]int) (recent [ownerRecent]int, pid int) {
	l.mu.Lock()
	recent = l.recent
	l.mu.Unlock()
	for _, p := range recent {
		if p == 0 {
			break
		}
		if skip != nil && inRecent(skip, p) {
			continue
		}
		switch b.scanFDs(l.procfd, p, anyUID) {
		case fdFound:
			return recent, p
		case fdGone:
			l.forget(0, p)
		}
	}
	return recent, 0
}

// scanAll searches every process but those in skip, in the order of /proc,
// those running as uid first.
func (l *ownerLookup) scanAll(b *scanBuf, uid uint32, skip *[ownerRecent]int) int {
	fd, err := openat(l.procfd, []byte(".\x00"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	b.others = b.others[:0]
	for {
		n, err := unix.Getdents(fd, b.procEnts)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		for ents := b.procEnts[:n]; len(ents) > 0; {
			var name []byte
			name, ents = nextDirent(ents)
			pid, ok := parsePID(name)
			if !ok || inRecent(skip, pid) {
				continue
			}
			switch b.scanFDs(l.procfd, pid, int64(uid)) {
			case fdFound:
				return pid
			case fdOtherUID:
				b.others = append(b.others, pid)
			}
		}
	}
	for _, pid := range b.others {
		if b.scanFDs(l.procfd, pid, anyUID) == fdFound {
			return pid
		}
	}
	return 0
}

// exe returns the executable of process id, from the cache or /proc.
func (l *ownerLookup) exe(b *scanBuf, id procID) (procExe, bool) {
	l.mu.Lock()
	e, ok := l.procs[id.pid]
	l.mu.Unlock()
	if ok && e.start == id.start {
		return e, true
	}
	dir := filepath.Join(l.proc, strconv.Itoa(id.pid))
	e = procExe{start: id.start}
	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		// A binary replaced (upgraded) since the process started.
		e.exe = strings.TrimSuffix(exe, " (deleted)")
		e.name = filepath.Base(e.exe)
	} else if comm, err := os.ReadFile(filepath.Join(dir, "comm")); err == nil {
		e.name = strings.TrimSuffix(string(comm), "\n") // a kernel thread, or not ours to read
	} else {
		return procExe{}, false // it exited
	}
	// Still the same process: the PID was not reused while we read.
	if start, ok := b.startTime(l.procfd, id.pid); !ok || start != id.start {
		return procExe{}, false
	}
	l.mu.Lock()
	if len(l.procs) >= ownerCacheProcs {
		evict(l.procs, ownerCacheProcs/4)
	}
	l.procs[id.pid] = e
	l.mu.Unlock()
	return e, true
}

// remember caches inode's process and puts it first among the recent.
func (l *ownerLookup) remember(inode uint32, id procID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.inodes) >= ownerCacheInodes {
		evict(l.inodes, ownerCacheInodes/4)
	}
	l.inodes[inode] = id
	i := 0
	for i < len(l.recent)-1 && l.recent[i] != id.pid {
		i++
	}
	copy(l.recent[1:i+1], l.recent[:i])
	l.recent[0] = id.pid
}

// forget drops inode (unless 0) and everything about process pid.
func (l *ownerLookup) forget(inode uint32, pid int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if inode != 0 {
		delete(l.inodes, inode)
	}
	delete(l.procs, pid)
	for i, p := range l.recent {
		if p == pid {
			copy(l.recent[i:], l.recent[i+1:])
			l.recent[len(l.recent)-1] = 0
			break
		}
	}
}

func inRecent(recent *[ownerRecent]int, pid int) bool {
	for _, p := range recent {
		if p == pid {
			return true
		}
	}
	return false
}

// evict deletes n entries, whichever map iteration yields first.
func evict[K comparable, V any](m map[K]V, n int) {
	for k := range m {
		if n == 0 {
			return
		}
		delete(m, k)
		n--
	}
}

// scanBuf holds one search's buffers.
type scanBuf struct {
	target   []byte // "socket:[INODE]"
	path     []byte // "PID/fd\x00"
	link     [64]byte
	stat     [1024]byte
	procEnts []byte
	fdEnts   []byte
	others   []int // PIDs the full scan left for its second pass
}

func newScanBuf() *scanBuf {
	return &scanBuf{
		target:   make([]byte, 0, 32),
		path:     make([]byte, 0, 32),
		procEnts: make([]byte, 16<<10),
		fdEnts:   make([]byte, 16<<10),
	}
}

// procPath returns "PID/file\x00", to open relative to /proc.
func (b *scanBuf) procPath(pid int, file string) []byte {
	b.path = strconv.AppendInt(b.path[:0], int64(pid), 10)
	b.path = append(append(append(b.path, '/'), file...), 0)
	return b.path
}

// What scanFDs found.
type fdScan int

const (
	fdMissing  fdScan = iota // no fd on the socket, or not ours to read
	fdFound                  // an fd on the socket
	fdGone                   // no such process
	fdOtherUID               // not searched: the process runs as another user
)

const anyUID = -1

// scanFDs searches the fds of process pid for one on b.target, if the
// process runs as uid (or uid is anyUID).
func (b *scanBuf) scanFDs(procfd, pid int, uid int64) fdScan {
	fd, err := openat(procfd, b.procPath(pid, "fd"), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	switch {
	case err == unix.ENOENT || err == unix.ESRCH:
		return fdGone
	case err != nil:
		return fdMissing // EACCES
	}
	defer unix.Close(fd)
	if uid != anyUID {
		// /proc/PID/fd belongs to the process's effective user.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err == nil && int64(st.Uid) != uid {
			return fdOtherUID
		}
	}
	for {
		n, err := unix.Getdents(fd, b.fdEnts)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return fdMissing
		}
		for ents := b.fdEnts[:n]; len(ents) > 0; {
			var name []byte
			name, ents = nextDirent(ents)
			if len(name) == 0 || name[0] == '.' {
				continue
			}
			k, err := readlinkat(fd, name, b.link[:])
			if err == nil && bytes.Equal(b.link[:k], b.target) {
				return fdFound
			}
		}
	}
}

// startTime reads field 22 of /proc/PID/stat.
func (b *scanBuf) startTime(procfd, pid int) (uint64, bool) {
	fd, err := openat(procfd, b.procPath(pid, "stat"), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	n, err := unix.Read(fd, b.stat[:])
	if err != nil || n <= 0 {
		return 0, false
	}
	return parseStartTime(b.stat[:n])
}

// parseStartTime returns field 22 of a /proc/PID/stat line. Field 2, the
// command in parentheses, may hold spaces and parentheses itself.
func parseStartTime(stat []byte) (uint64, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	rest := stat[i+1:]
	for field := 3; field < 22; field++ { // skip fields 3 to 21
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return 0, false
		}
		rest = rest[j:]
	}
	rest = bytes.TrimLeft(rest, " ")
	var v uint64
	n := 0
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
		v = v*10 + uint64(rest[n]-'0')
	}
	return v, n > 0
}

// nextDirent splits the first linux_dirent64 off ents: its name, with the
// terminating NUL, and the rest.
func nextDirent(ents []byte) (name, rest []byte) {
	const nameOff = 19 // after d_ino, d_off, d_reclen, d_type
	if len(ents) < nameOff {
		return nil, nil
	}
	reclen := int(binary.NativeEndian.Uint16(ents[16:]))
	if reclen < nameOff || reclen > len(ents) {
		return nil, nil
	}
	name = ents[nameOff:reclen]
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i+1]
	} else {
		name = nil
	}
	return name, ents[reclen:]
}

// maxPID bounds what parsePID accepts: Linux's PID_MAX_LIMIT is 2^22.
const maxPID = 1 << 22

// parsePID reads a NUL-terminated directory name of /proc as a PID.
func parsePID(name []byte) (int, bool) {
	if len(name) < 2 {
		return 0, false
	}
	pid := 0
	for _, c := range name[:len(name)-1] {
		if c < '0' || c > '9' || pid > maxPID/10 {
			return 0, false // not a PID (the kernel's are at most 2^22)
		}
		pid = pid*10 + int(c-'0')
	}
	return pid, pid > 0
}

// openat and readlinkat take NUL-terminated names, unlike package unix,
// whose string arguments cost an allocation each.
func openat(dirfd int, name []byte, flags int) (int, error) {
	for {
		fd, _, e := unix.Syscall6(unix.SYS_OPENAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(flags), 0, 0, 0)
		switch e {
		case 0:
			return int(fd), nil
		case unix.EINTR:
			continue
		}
		return -1, e
	}
}

func readlinkat(dirfd int, name, buf []byte) (int, error) {
	n, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
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
