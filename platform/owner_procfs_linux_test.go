package platform

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// fakeProc is a directory laid out as procfs, as far as the lookup reads it.
type fakeProc struct {
	t   *testing.T
	dir string
}

func (p fakeProc) process(pid int, start uint64, exe string, sockets ...uint32) {
	dir := filepath.Join(p.dir, fmt.Sprint(pid))
	os.RemoveAll(dir)
	must(p.t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	// The command holds spaces and parentheses, as real ones may.
	stat := fmt.Sprintf("%d (a) b (c) S 1 %d %d 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 10000 100\n", pid, pid, pid, start)
	must(p.t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	must(p.t, os.WriteFile(filepath.Join(dir, "comm"), []byte("comm-"+fmt.Sprint(pid)+"\n"), 0o644))
	if exe != "" {
		must(p.t, os.Symlink(exe, filepath.Join(dir, "exe")))
	}
	must(p.t, os.Symlink("/dev/null", filepath.Join(dir, "fd", "0")))
	for i, s := range sockets {
		must(p.t, os.Symlink(fmt.Sprintf("socket:[%d]", s), filepath.Join(dir, "fd", fmt.Sprint(i+3))))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// The search and its caches, on a fake /proc: PIDs reused, processes gone,
// executables replaced.
func TestOwnerProcessCache(t *testing.T) {
	p := fakeProc{t, t.TempDir()}
	must(t, os.WriteFile(filepath.Join(p.dir, "uptime"), nil, 0o644)) // not a process
	p.process(100, 1000, "/usr/bin/mail", 555, 556)
	p.process(200, 1001, "", 777)
	p.process(300, 1002, "/opt/app/bin/app (deleted)", 888)
	l, err := newOwnerLookup(quietLog(), p.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	check := func(what string, inode uint32, pid int, exe, name string) {
		t.Helper()
		id, e, ok := l.process(context.Background(), uint32(os.Getuid()), inode)
		if pid == 0 {
			if ok {
				t.Errorf("%s: found %v %+v, want nothing", what, id, e)
			}
			return
		}
		if !ok || id.pid != pid || e.exe != exe || e.name != name {
			t.Errorf("%s: got %v %+v %v, want pid %d exe %q name %q", what, id, e, ok, pid, exe, name)
		}
	}
	check("first", 555, 100, "/usr/bin/mail", "mail")
	check("cached", 555, 100, "/usr/bin/mail", "mail")
	check("same process, another socket", 556, 100, "/usr/bin/mail", "mail")
	check("no exe (kernel thread)", 777, 200, "", "comm-200")
	check("replaced executable", 888, 300, "/opt/app/bin/app", "app")
	if l.recent[0] != 300 || l.recent[1] != 200 || l.recent[2] != 100 || l.recent[3] != 0 {
		t.Errorf("recent PIDs %v, want 300 200 100", l.recent)
	}
	check("unknown socket", 999, 0, "", "")

	// PID 100 exits and is reused, by another program holding the socket
	// (inherited, say).
	p.process(100, 5000, "/usr/bin/other", 555)
	check("PID reused", 555, 100, "/usr/bin/other", "other")
	if e := l.procs[100]; e.start != 5000 {
		t.Errorf("cached executable of PID 100 %+v, want the new process's", e)
	}

	// PID 200 exits.
	must(t, os.RemoveAll(filepath.Join(p.dir, "200")))
	check("process gone", 777, 0, "", "")
	if _, ok := l.procs[200]; ok || inRecent(&l.recent, 200) {
		t.Errorf("PID 200 is still remembered: %+v %v", l.procs, l.recent)
	}

	// A process of another user is searched after the socket's user's.
	if os.Geteuid() == 0 {
		p.process(400, 1003, "/usr/bin/daemon", 999)
		must(t, os.Chown(filepath.Join(p.dir, "400", "fd"), 65534, 65534))
		check("another user's process", 999, 400, "/usr/bin/daemon", "daemon")
	}

	for i := range 2 * ownerCacheInodes {
		l.remember(uint32(10000+i), procID{pid: 100, start: 5000})
	}
	if len(l.inodes) > ownerCacheInodes || l.recent[0] != 100 {
		t.Errorf("%d inodes cached, recent %v", len(l.inodes), l.recent)
	}
}

func TestParseStartTime(t *testing.T) {
	for _, c := range []struct {
		stat string
		want uint64
		ok   bool
	}{
		{"1 (systemd) S 0 1 1 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 27 1000 100\n", 27, true},
		{"42 (we(ir)d ) na) R 1 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 123456789 1 1", 123456789, true},
		{"42 (short) R 1 2 3", 0, false},
		{"garbage", 0, false},
	} {
		got, ok := parseStartTime([]byte(c.stat))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: %d %v, want %d %v", c.stat, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseStartTime reads arbitrary /proc/PID/stat text (a process names
// itself, so field 2 is anyone's choice): never a panic, and for a line of
// the kernel's shape, field 22.
func FuzzParseStartTime(f *testing.F) {
	f.Add([]byte("1234 (sh) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n"), "x")
	f.Add([]byte("1 ((a) b)) R"), ") ) )")
	f.Fuzz(func(t *testing.T, stat []byte, comm string) {
		parseStartTime(stat)
		// The same fields behind an arbitrary command name.
		line := "42 (" + comm + ") S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20\n"
		v, ok := parseStartTime([]byte(line))
		if !ok || v != 987654 {
			t.Fatalf("start time of %q: %d, %v", line, v, ok)
		}
	})
}

// FuzzNextDirent walks arbitrary getdents64 output: names are NUL-ended,
// the walk always ends, and it never reads past the buffer.
func FuzzNextDirent(f *testing.F) {
	ent := func(name string) []byte {
		reclen := (19 + len(name) + 1 + 7) &^ 7
		b := make([]byte, reclen)
		binary.NativeEndian.PutUint16(b[16:], uint16(reclen))
		copy(b[19:], name)
		return b
	}
	f.Add(append(ent("1"), ent("self")...))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, ents []byte) {
		for len(ents) > 0 { // it ends: every step takes at least 19 bytes
			var name []byte
			before := len(ents)
			name, ents = nextDirent(ents)
			if name == nil && ents == nil {
				return
			}
			if len(ents) >= before {
				t.Fatal("no progress")
			}
			if name != nil {
				if name[len(name)-1] != 0 || bytes.IndexByte(name, 0) != len(name)-1 {
					t.Fatalf("name %q is not NUL-ended", name)
				}
				if pid, ok := parsePID(name); ok {
					if n, err := strconv.Atoi(string(name[:len(name)-1])); err != nil || n != pid {
						t.Fatalf("%q read as PID %d", name, pid)
					}
				}
			}
		}
	})
}

// A flow given up stops its search: before it starts, and while it waits
// for another flow's full scan of /proc.
func TestOwnerProcessCancelled(t *testing.T) {
	p := fakeProc{t, t.TempDir()}
	p.process(100, 1000, "/usr/bin/mail", 555)
	l, err := newOwnerLookup(quietLog(), p.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if id, e, ok := l.process(ctx, uint32(os.Getuid()), 555); ok {
		t.Errorf("a cancelled search found %v %+v", id, e)
	}

	// Another flow's full scan holds the token; this one waits, until
	// its flow ends.
	l.scan <- struct{}{}
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		_, _, ok := l.process(ctx, uint32(os.Getuid()), 555)
		done <- ok
	}()
	cancel()
	if <-done {
		t.Error("found while waiting for another scan, after its flow ended")
	}
	<-l.scan

	// The same search, not cancelled, finds it.
	if id, _, ok := l.process(context.Background(), uint32(os.Getuid()), 555); !ok || id.pid != 100 {
		t.Errorf("got %v %v, want PID 100", id, ok)
	}
}
