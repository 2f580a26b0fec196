package control_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/control/controltest"
)

// Another user, as the kernel reports it, is refused the profiles even as
// a member of control.group; root gets them. curl is the client.
func TestPprofOtherUser(t *testing.T) {
	_, socket, logs := otherUsersServer(t, control.Options{Backend: &controltest.Backend{}, Pprof: true})
	curl := func(cred *syscall.Credential) string {
		cmd := exec.Command("curl", "-q", "-sS", "--unix-socket", socket, "-w", "\nstatus %{http_code}\n", "http://shunt/debug/pprof/goroutine?debug=1")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent"}
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	if out := curl(&syscall.Credential{Uid: 54401, Gid: 54401, Groups: []uint32{otherGroup}}); !strings.Contains(out, "status 403") || !strings.Contains(out, "may not read the profiles") {
		t.Errorf("a member of control.group:\n%s\nwant a 403", out)
	}
	if !strings.Contains(logs.String(), "refused: uid 54401") {
		t.Errorf("no log line for the refusal:\n%s", logs)
	}
	if out := curl(nil); !strings.Contains(out, "status 200") || !strings.Contains(out, "goroutine profile") {
		t.Errorf("root:\n%.300s\nwant the goroutine profile", out)
	}
}
