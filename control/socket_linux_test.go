package control_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
)

func quietLog() *logrus.Logger {
	log := logrus.New()
	log.Out = &syncBuffer{}
	return log
}

// The socket's directory is made 0755 whatever the umask, the socket is
// 0660 and in the group given, and it is gone after Close.
func TestSocketFile(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	socket := filepath.Join(t.TempDir(), "run", "shunt", "s")
	// A gid this process may give the socket: any, as root; else its own.
	gid := os.Getegid()
	if os.Geteuid() == 0 {
		gid = 54321
	}
	srv, err := control.NewServer(control.Options{Socket: socket, Group: strconv.Itoa(gid), Backend: &controltest.Backend{}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if srv.Socket() != socket {
		t.Errorf("Socket() = %q", srv.Socket())
	}
	dir, err := os.Stat(filepath.Dir(socket))
	if err != nil || dir.Mode().Perm() != 0o755 {
		t.Errorf("directory: %v, %v; want mode 0755", dir.Mode(), err)
	}
	fi, err := os.Lstat(socket)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket: %v, %v; want a socket, mode 0660", fi.Mode(), err)
	}
	if got := fi.Sys().(*syscall.Stat_t).Gid; int(got) != gid {
		t.Errorf("socket's group %d, want %d", got, gid)
	}
	if _, err := (&control.Client{Socket: socket}).Status(context.Background()); err != nil {
		t.Errorf("Status: %v", err)
	}
	srv.Close()
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("after Close the socket is still there: %v", err)
	}
}

// A socket left by a shunt that ended is replaced; one that a live
// process answers on, or a file that is not a socket, is left alone and
// NewServer refuses to start.
func TestSocketInTheWay(t *testing.T) {
	dir := t.TempDir()
	opts := func(socket string) control.Options {
		return control.Options{Socket: socket, Backend: &controltest.Backend{}, Log: quietLog()}
	}

	stale := filepath.Join(dir, "stale")
	staleSocket(t, stale)
	srv, err := control.NewServer(opts(stale))
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	defer srv.Close()
	if _, err := (&control.Client{Socket: stale}).Status(context.Background()); err != nil {
		t.Errorf("Status after replacing a stale socket: %v", err)
	}

	// srv is live on stale now.
	_, err = control.NewServer(opts(stale))
	if err == nil || !strings.Contains(err.Error(), "control socket "+stale+": another shunt is running, it answers there: stop it (shunt down --socket "+stale+")") {
		t.Errorf("over a live socket: %v", err)
	}
	if _, err := (&control.Client{Socket: stale}).Status(context.Background()); err != nil {
		t.Errorf("the live server was disturbed: %v", err)
	}

	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep me"), 0o600)
	_, err = control.NewServer(opts(file))
	if err == nil || !strings.Contains(err.Error(), "the path exists and is not a socket") {
		t.Errorf("over a file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Error("the file was touched")
	}

	long := filepath.Join(dir, strings.Repeat("x", 120))
	if _, err := control.NewServer(opts(long)); err == nil || !strings.Contains(err.Error(), "set control.socket to a shorter one") {
		t.Errorf("a path too long: %v", err)
	}

	o := opts(filepath.Join(dir, "g"))
	o.Group = "shunt-no-such-group-x7"
	if _, err := control.NewServer(o); err == nil || !strings.Contains(err.Error(), `control.group "shunt-no-such-group-x7"`) {
		t.Errorf("an unknown group: %v", err)
	}
	if _, err := control.NewServer(control.Options{Socket: filepath.Join(dir, "n")}); err == nil {
		t.Error("a server without a backend")
	}
}
