package platform

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/windows"
)

// Finding a flow's owner on Windows takes two steps.
//
// The socket: GetExtendedTcpTable (iphlpapi.dll; x/sys/windows has no
// wrapper) with TCP_TABLE_OWNER_PID_ALL gives every TCP connection of a
// family with its owning PID; owner_tcptable.go reads it. Like macOS,
// Windows offers no lookup by 4-tuple, so the cost grows with the number
// of connections.
//
// The process: OpenProcess with PROCESS_QUERY_LIMITED_INFORMATION (the
// least access that names the image, which the service's SYSTEM account
// gets for nearly every process),
// QueryFullProcessImageName for the executable, and the process token's
// user SID. Both are cached under the PID and the process's creation time,
// since PIDs are reused.
//
// Users: Windows has no numeric user ids, and none is made up here. A
// SID's last part (the RID) is a number, but it is unique only within its
// domain (RID 1001 of this machine and of a domain are different users),
// and RID 500 is the Administrator, which a uid rule would not expect; a
// made-up uid could let the wrong user's flows ride on a profile. So an
// owner here has NoUID set and its SID in User: rules naming users by uid
// never match it, allowed_users (other than any) refuses its flows, and
// LookupUID fails with ErrNoUID. Rules naming applications work.

const (
	tcpTableOwnerPIDAll   = 5 // TCP_TABLE_CLASS's TCP_TABLE_OWNER_PID_ALL
	ownerCacheProcsWindow = 1024
)

type windowsExe struct {
	created   windows.Filetime
	exe, name string
	sid       string
}

type windowsOwners struct {
	log      logrus.FieldLogger
	getTable *windows.LazyProc

	mu    sync.Mutex
	procs map[uint32]windowsExe
}

// NewOwners returns the lookup for this OS. It loads iphlpapi.dll from
// the system directory; it holds nothing to close.
func NewOwners(log logrus.FieldLogger) (Owners, error) {
	p := windows.NewLazySystemDLL("iphlpapi.dll").NewProc("GetExtendedTcpTable")
	if err := p.Find(); err != nil {
		return nil, fmt.Errorf("the TCP connection table (iphlpapi.dll's GetExtendedTcpTable): %w", err)
	}
	return &windowsOwners{log: log, getTable: p, procs: make(map[uint32]windowsExe)}, nil
}

// Close does nothing: the DLL stays loaded for the process's life.
func (o *windowsOwners) Close() error { return nil }

// Lookup finds the owner of the local socket src connected to dst.
func (o *windowsOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	src, dst, err := flowTuple(src, dst)
	if err != nil {
		return Owner{}, err
	}
	pid, err := o.socket(ctx, src, dst)
	if err != nil {
		return Owner{}, err
	}
	ow := Owner{NoUID: true}
	if pid == 0 {
		return ow, nil
	}
	if err := ownerCtxErr(ctx, src, dst); err != nil {
		return Owner{}, err
	}
	e, err := o.process(pid)
	if err != nil {
		o.log.WithFields(logrus.Fields{"src": src, "dst": dst, "pid": pid}).WithError(err).
			Debug("the process of the flow's local socket cannot be read (it exited, or is protected)")
		return ow, nil
	}
	ow.PID, ow.Exe, ow.Name, ow.User = int(pid), e.exe, e.name, e.sid
	return ow, nil
}

// LookupUID fails: Windows users have SIDs, no uids (see above).
func (o *windowsOwners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	return 0, fmt.Errorf("owner of %v -> %v: %w", src, dst, ErrNoUID)
}

// socket returns the PID owning the connection src -> dst (flowTuple's).
// An IPv4 flow is looked for in the IPv4 table, then among the IPv6
// table's mapped addresses (a dual-stack socket).
func (o *windowsOwners) socket(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	families := []uint32{windows.AF_INET, windows.AF_INET6}
	if src.Addr().Is6() {
		families = families[1:]
	}
	for _, af := range families {
		if err := ownerCtxErr(ctx, src, dst); err != nil {
			return 0, err
		}
		table, err := o.table(af)
		if err != nil {
			return 0, fmt.Errorf("owner of %v -> %v: GetExtendedTcpTable: %w", src, dst, err)
		}
		pid, ok, err := findTCPRow(table, af == windows.AF_INET6, src, dst)
		if err != nil {
			return 0, fmt.Errorf("owner of %v -> %v: %w", src, dst, err)
		}
		if ok {
			return pid, nil
		}
	}
	return 0, errNoSocket(src, dst)
}

// table returns GetExtendedTcpTable's answer for family af, growing the
// buffer while connections come faster than it does.
func (o *windowsOwners) table(af uint32) ([]byte, error) {
	var size uint32
	var buf []byte
	for range 8 {
		var p *byte
		if len(buf) > 0 {
			p = &buf[0]
		}
		r, _, _ := o.getTable.Call(uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&size)), 0, uintptr(af), tcpTableOwnerPIDAll, 0)
		switch e := windows.Errno(r); {
		case r == 0:
			return buf, nil
		case e == windows.ERROR_INSUFFICIENT_BUFFER:
			buf = make([]byte, size+size/8) // room for connections opened meanwhile
			size = uint32(len(buf))
		default:
			return nil, e
		}
	}
	return nil, errors.New("the table kept growing faster than it was read")
}

// process returns the executable and user of process pid, from the cache
// or the system.
func (o *windowsOwners) process(pid uint32) (windowsExe, error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return windowsExe{}, fmt.Errorf("OpenProcess: %w", err)
	}
	defer windows.CloseHandle(h)
	var created, exited, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &created, &exited, &kernel, &user); err != nil {
		return windowsExe{}, fmt.Errorf("GetProcessTimes: %w", err)
	}
	o.mu.Lock()
	e, ok := o.procs[pid]
	o.mu.Unlock()
	if ok && e.created == created {
		return e, nil
	}
	e = windowsExe{created: created}
	name := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(name))
	if err := windows.QueryFullProcessImageName(h, 0, &name[0], &n); err != nil {
		return windowsExe{}, fmt.Errorf("QueryFullProcessImageName: %w", err)
	}
	e.exe = windows.UTF16ToString(name[:n])
	e.name = filepath.Base(e.exe)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err == nil {
		if tu, err := tok.GetTokenUser(); err == nil {
			e.sid = tu.User.Sid.String()
		}
		tok.Close()
	}
	o.mu.Lock()
	if len(o.procs) >= ownerCacheProcsWindow {
		evict(o.procs, ownerCacheProcsWindow/4)
	}
	o.procs[pid] = e
	o.mu.Unlock()
	return e, nil
}
