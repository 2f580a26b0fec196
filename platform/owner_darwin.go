package platform

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Finding a flow's owner on macOS, without cgo, takes two sysctls.
//
// The socket: net.inet.tcp.pcblist_n copies out every TCP PCB with its
// socket, and the one with the flow's addresses gives the user (so_uid)
// and the process (so_e_pid, else so_last_pid); owner_pcblist.go reads
// it. The kernel offers userland no lookup by 4-tuple, so the cost grows
// with the number of TCP sockets (some 600 bytes each); the lookups are
// made only while rules name applications or users.
//
// The executable: kern.procargs2 for the PID (owner_procargs.go), cached
// under the PID and the process's start time (kern.proc.pid's
// p_starttime), since PIDs are reused. Where it cannot be read (the
// process is a zombie), the name is kern.proc.pid's p_comm.

const ownerCacheProcsDarwin = 1024

type darwinExe struct {
	start     unix.Timeval
	exe, name string
}

type darwinOwners struct {
	log logrus.FieldLogger

	mu    sync.Mutex
	procs map[int]darwinExe
}

// NewOwners returns the lookup for this OS. It holds nothing open; it
// checks that the PCB list can be read, so that a missing or refused
// sysctl fails at start rather than at each flow.
func NewOwners(log logrus.FieldLogger) (Owners, error) {
	if _, err := pcbList(); err != nil {
		return nil, fmt.Errorf("reading the TCP sockets (sysctl net.inet.tcp.pcblist_n): %w", err)
	}
	return &darwinOwners{log: log, procs: make(map[int]darwinExe)}, nil
}

// Close does nothing: the lookup holds nothing open.
func (o *darwinOwners) Close() error { return nil }

// Lookup finds the owner of the local socket src connected to dst.
func (o *darwinOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
		return Owner{}, err
	}
	s, err := o.socket(ctx, src, dst)
	if err != nil {
		return Owner{}, err
	}
	ow := Owner{UID: s.uid}
	if s.pid == 0 {
		return ow, nil
	}
	if err := ownerCtxErr(ctx, src, dst); err != nil {
		return Owner{}, err
	}
	e, ok := o.process(s.pid)
	if !ok {
		o.log.WithFields(logrus.Fields{"src": src, "dst": dst, "uid": s.uid, "pid": s.pid}).
			Debug("the process of the flow's local socket is gone")
		return ow, nil
	}
	ow.PID, ow.Exe, ow.Name = s.pid, e.exe, e.name
	return ow, nil
}

// LookupUID finds only the user of the local socket src connected to dst:
// the PCB list, no look at the process.
func (o *darwinOwners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
		return 0, err
	}
	s, err := o.socket(ctx, src, dst)
	return s.uid, err
}

// socket finds the flow's socket in the PCB list; src and dst are
// flowTuple's.
func (o *darwinOwners) socket(ctx context.Context, src, dst netip.AddrPort) (pcbSocket, error) {
	if err := ownerCtxErr(ctx, src, dst); err != nil {
		return pcbSocket{}, err
	}
	list, err := pcbList()
	if err != nil {
		return pcbSocket{}, fmt.Errorf("owner of %v -> %v: sysctl net.inet.tcp.pcblist_n: %w", src, dst, err)
	}
	s, ok, err := findPCB(list, src, dst)
	if err != nil {
		return pcbSocket{}, fmt.Errorf("owner of %v -> %v: %w", src, dst, err)
	}
	if !ok {
		return pcbSocket{}, errNoSocket(src, dst)
	}
	return s, nil
}

// pcbList reads the TCP PCB list. The kernel sizes its answer with room
// for an eighth more sockets; where even more came between the size and
// the copy (ENOMEM), it asks again.
func pcbList() ([]byte, error) {
	for try := 0; ; try++ {
		list, err := unix.SysctlRaw("net.inet.tcp.pcblist_n")
		if err == unix.ENOMEM && try < 3 {
			continue
		}
		return list, err
	}
}

// process returns the executable of process pid, from the cache or the
// kernel; false if the process is gone.
func (o *darwinOwners) process(pid int) (darwinExe, bool) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || int(kp.Proc.P_pid) != pid {
		return darwinExe{}, false
	}
	start := kp.Proc.P_starttime
	o.mu.Lock()
	e, ok := o.procs[pid]
	o.mu.Unlock()
	if ok && e.start == start {
		return e, true
	}
	e = darwinExe{start: start}
	path := ""
	if args, err := unix.SysctlRaw("kern.procargs2", pid); err == nil {
		path, _ = parseProcArgs(args)
	}
	switch {
	case path != "":
		if filepath.IsAbs(path) {
			e.exe = path
		}
		e.name = filepath.Base(path)
	default: // a zombie, or not ours to read
		comm := kp.Proc.P_comm[:]
		if i := bytes.IndexByte(comm, 0); i >= 0 {
			comm = comm[:i]
		}
		if len(comm) == 0 {
			return darwinExe{}, false
		}
		e.name = string(comm)
	}
	// Still the same process: the PID was not reused while we read.
	if kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid); err != nil || kp.Proc.P_starttime != start {
		return darwinExe{}, false
	}
	o.mu.Lock()
	if len(o.procs) >= ownerCacheProcsDarwin {
		evict(o.procs, ownerCacheProcsDarwin/4)
	}
	o.procs[pid] = e
	o.mu.Unlock()
	return e, true
}
