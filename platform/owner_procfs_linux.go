package platform

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The process behind a socket, on Linux: the one with an fd linking to
// "socket:[INODE]" in /proc/PID/fd. The processes that owned the latest
// flows are searched first (applications open flows in bursts), then all
// of /proc, one full scan at a time, the processes of the socket's user
// first. Results are cached under the PID and the process's start time,
// since PIDs are reused. The scan builds its paths in reused buffers and
// allocates nothing. A flow's context that ends stops its search between
// processes, and its wait for another flow's full scan.

const (
	ownerCacheInodes = 4096 // socket inode → process
	ownerCacheProcs  = 1024 // process → executable
	ownerRecent      = 8    // processes searched before all of /proc
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

// procScan finds the processes holding sockets, in procfs.
type procScan struct {
	proc   string // where procfs is mounted
	procfd int

	scan chan struct{} // holds a token during a full scan

	mu     sync.Mutex // guards what follows
	inodes map[uint32]procID
	procs  map[int]procExe
	recent [ownerRecent]int // PIDs, latest first; 0 is empty
	bufs   sync.Pool        // *scanBuf
}

func newProcScan(proc string) (*procScan, error) {
	fd, err := unix.Open(proc, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", proc, err)
	}
	p := &procScan{
		proc:   proc,
		procfd: fd,
		scan:   make(chan struct{}, 1),
		inodes: make(map[uint32]procID),
		procs:  make(map[int]procExe),
	}
	p.bufs.New = func() any { return newScanBuf() }
	return p, nil
}

// close releases /proc. Searches must have ended.
func (l *procScan) close() error { return unix.Close(l.procfd) }

// process finds the process holding socket inode, and its executable.
// uid, the socket's, chooses which processes the full scan searches first.
// Once ctx ends, it gives up (not found) between processes.
func (l *procScan) process(ctx context.Context, uid, inode uint32) (procID, procExe, bool) {
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
	tried, pid := l.searchRecent(ctx, b, nil)
	if pid == 0 && ctx.Err() == nil {
		// One full scan at a time: a new application opens several flows
		// at once, and the lookups after the first find it among the
		// recent processes. A flow given up stops waiting.
		select {
		case l.scan <- struct{}{}:
		case <-ctx.Done():
			return procID{}, procExe{}, false
		}
		defer func() { <-l.scan }()
		if tried, pid = l.searchRecent(ctx, b, &tried); pid == 0 {
			pid = l.scanAll(ctx, b, uid, &tried)
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
// returns them with the one holding the socket (0: none, or ctx ended).
func (l *procScan) searchRecent(ctx context.Context, b *scanBuf, skip *[ownerRecent]int) (recent [ownerRecent]int, pid int) {
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
		if ctx.Err() != nil {
			return recent, 0
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
// those running as uid first. It returns 0 when none holds the socket, or
// as soon as ctx ends.
func (l *procScan) scanAll(ctx context.Context, b *scanBuf, uid uint32, skip *[ownerRecent]int) int {
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
			if ctx.Err() != nil {
				return 0
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
		if ctx.Err() != nil {
			return 0
		}
		if b.scanFDs(l.procfd, pid, anyUID) == fdFound {
			return pid
		}
	}
	return 0
}

// exe returns the executable of process id, from the cache or /proc.
func (l *procScan) exe(b *scanBuf, id procID) (procExe, bool) {
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
func (l *procScan) remember(inode uint32, id procID) {
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
func (l *procScan) forget(inode uint32, pid int) {
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
