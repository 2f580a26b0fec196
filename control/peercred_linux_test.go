package control_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
	"github.com/shunt-dev/shunt/internal/testns"
)

const helperEnv = "SHUNT_CONTROL_TEST_HELPER"

// TestHelperClient is not a test: run by TestOtherUsers as another user,
// it asks for the status with control.Client and prints what it got.
func TestHelperClient(t *testing.T) {
	socket := os.Getenv(helperEnv)
	if socket == "" {
		t.Skip("a helper process of TestOtherUsers")
	}
	st, err := (&control.Client{Socket: socket}).Status(context.Background())
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(0)
	}
	fmt.Printf("profiles: %d\n", len(st.Profiles))
	os.Exit(0)
}

// Other users, as the kernel reports them: one not in control.group is
// refused, by the socket's mode and, past it, with a 403 and a log line;
// members by their primary or a supplementary group are served. curl is
// the client, as a user's script would be, and so is control.Client.
func TestOtherUsers(t *testing.T) {
	b := &controltest.Backend{}
	b.SetStatus(sample())
	dir, socket, logs := otherUsersServer(t, control.Options{Backend: b})

	// The test binary, where the other users may run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "control.test")
	if err := copyFile(self, helper, 0o755); err != nil {
		t.Fatal(err)
	}

	as := func(cmd *exec.Cmd, uid, gid uint32, groups ...uint32) string {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
		cmd.Dir = "/"
		cmd.Env = append(cmd.Env, "PATH=/usr/bin:/bin", "HOME=/nonexistent")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	curl := func(uid, gid uint32, groups ...uint32) string {
		return as(exec.Command("curl", "-q", "-sS", "--unix-socket", socket, "-w", "\nstatus %{http_code}\n", "http://shunt/v1/status"), uid, gid, groups...)
	}
	client := func(uid, gid uint32, groups ...uint32) string {
		cmd := exec.Command(helper, "-test.run=^TestHelperClient$")
		cmd.Env = []string{helperEnv + "=" + socket}
		return as(cmd, uid, gid, groups...)
	}

	// The socket's mode keeps an outsider away before the server sees it.
	if out := curl(54400, 54400); strings.Contains(out, "status 200") || strings.Contains(out, "status 403") {
		t.Errorf("an outsider reached the server through mode 0660:\n%s", out)
	}
	if out := client(54400, 54400); !strings.Contains(out, "error: not allowed to use the control socket "+socket) {
		t.Errorf("the client, as an outsider:\n%s", out)
	}
	if strings.Contains(logs.String(), "54400") {
		t.Errorf("the server saw the outsider: %s", logs)
	}

	// Past the mode, the server refuses outsiders itself.
	os.Chmod(socket, 0o666)
	for _, who := range []struct {
		uid, gid uint32
		groups   []uint32
	}{{54400, 54400, nil}, {54403, 54403, []uint32{otherGroup + 1, 27}}} {
		out := curl(who.uid, who.gid, who.groups...)
		want := fmt.Sprintf(`{"error":"uid %d, gid %d, pid `, who.uid, who.gid)
		if !strings.Contains(out, "status 403") || !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("may not use the control socket: it serves root and members of group %d (control.group)", otherGroup)) {
			t.Errorf("uid %d, groups %v, past the mode:\n%s\nwant a 403 starting %s", who.uid, who.groups, out, want)
		}
		if !strings.Contains(logs.String(), fmt.Sprintf("control socket: refused: uid %d", who.uid)) {
			t.Errorf("no log line for uid %d:\n%s", who.uid, logs)
		}
	}
	if out := client(54400, 54400); !strings.Contains(out, "error: uid 54400, gid 54400, pid ") {
		t.Errorf("the client, refused by the server:\n%s", out)
	}
	os.Chmod(socket, 0o660)

	// Members are served, by a supplementary group or their primary one.
	for _, who := range []struct {
		uid, gid uint32
		groups   []uint32
	}{{54401, 54401, []uint32{27, otherGroup}}, {54402, otherGroup, nil}} {
		if out := curl(who.uid, who.gid, who.groups...); !strings.Contains(out, "status 200") || !strings.Contains(out, `"name":"office"`) {
			t.Errorf("member uid %d gid %d groups %v:\n%s", who.uid, who.gid, who.groups, out)
		}
		if out := client(who.uid, who.gid, who.groups...); out != "profiles: 3\n" {
			t.Errorf("the client as member uid %d:\n%s", who.uid, out)
		}
	}
	if calls := b.Calls(); len(calls) != 0 {
		t.Errorf("the backend was asked %q", calls)
	}
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// otherGroup is control.group in the tests that run clients as other
// users.
const otherGroup = 54321

// otherUsersServer serves opts on a socket in a directory other users can
// reach (t.TempDir's are 0700), with control.group otherGroup, logging to
// the buffer it returns; it skips (fails in CI) without root or curl. The
// server closes when the test ends.
func otherUsersServer(t *testing.T, opts control.Options) (dir, socket string, logs *syncBuffer) {
	t.Helper()
	lack := ""
	if os.Geteuid() != 0 {
		lack = "needs root to run clients as other users"
	} else if _, err := exec.LookPath("curl"); err != nil {
		lack = "needs curl (apt-get install curl)"
	}
	testns.Need(t, lack)
	dir, err := os.MkdirTemp("", "shunt-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	socket = filepath.Join(dir, "s")
	logs = &syncBuffer{}
	log := logrus.New()
	log.Out = logs
	opts.Socket, opts.Group, opts.Log = socket, fmt.Sprint(otherGroup), log
	srv, err := control.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return dir, socket, logs
}
