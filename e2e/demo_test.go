//go:build linux

package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// demoRun runs the built binary's shunt demo with args and env (nil: the
// test's own), and returns its exit status, output and world id.
func demoRun(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(shuntBin, append([]string{"demo"}, args...)...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	rc := 0
	if ee, ok := err.(*exec.ExitError); ok {
		rc = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	id := ""
	if m := regexp.MustCompile(`\(id ([0-9a-f]{6})\)`).FindStringSubmatch(out.String()); m != nil {
		id = m[1]
		// Whatever happens, the world goes.
		t.Cleanup(func() { exec.Command(shuntBin, "demo", "--down", id).Run() })
	}
	return rc, out.String(), id
}

// demoExplanations are what each step's explanation says.
var demoExplanations = []string{
	`✓ Web request: GET / gave 200 OK and the page`,
	`✓ Download: 8.0 MiB, sha256 matched`,
	`✓ Mail banner: the server spoke first`,
	`✓ Telnet (blocked): dial tcp 203.0.113.2:23: connect: connection refused`,
	`203.0.113.2:80 matched rule #2 "internal", which tunnels it through profile "gateway": encrypted over SSH to 198.51.100.1:22`,
	`203.0.113.2:23 matched rule #1 "no-telnet", whose action is block: shunt refused the connection itself`,
	"PROFILE  STATE", // shunt status while the download runs
	"Every step worked.",
}

// demoLeftovers lists what world id left: namespaces, files, processes.
func demoLeftovers(id string) []string {
	var left []string
	for _, r := range []string{"c", "g", "i"} {
		for _, p := range []string{"/run/netns/shunt-demo-" + id + "-" + r, "/etc/netns/shunt-demo-" + id + "-" + r} {
			if _, err := os.Stat(p); err == nil {
				left = append(left, p)
			}
		}
	}
	for _, p := range []string{filepath.Join(os.TempDir(), "shunt-demo-"+id), filepath.Join(os.TempDir(), "shunt-demo-"+id+"-logs")} {
		if _, err := os.Stat(p); err == nil {
			left = append(left, p)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte("shunt-demo-"+id)) {
			left = append(left, p+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	if b, err := exec.Command("ip", "-o", "link").Output(); err == nil && strings.Contains(string(b), "shd"+id) {
		left = append(left, "a veth shd"+id+"*")
	}
	return left
}

func demoCheck(t *testing.T, rc int, out, id string) {
	t.Helper()
	if rc != 0 {
		t.Errorf("shunt demo exited %d:\n%s", rc, out)
	}
	for _, w := range demoExplanations {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "level=") {
		t.Errorf("log lines on the terminal:\n%s", out)
	}
	if id == "" {
		t.Fatalf("no world id in the output:\n%s", out)
	}
	if left := demoLeftovers(id); len(left) > 0 {
		t.Errorf("shunt demo left behind: %q", left)
	}
}

// TestDemo runs shunt demo as a newcomer would (with Debian's sshd on PATH,
// the demo's gateway is OpenSSH).
func TestDemo(t *testing.T) {
	prerequisites(t)
	rc, out, id := demoRun(t, nil)
	if !strings.Contains(out, "runs OpenSSH's sshd") {
		t.Errorf("with sshd on PATH the demo's gateway should be OpenSSH:\n%s", out)
	}
	demoCheck(t, rc, out, id)
}

// TestDemoBuiltinGateway runs it with no sshd on PATH: the built-in shunt
// gateway serves.
func TestDemoBuiltinGateway(t *testing.T) {
	prerequisites(t)
	env := []string{"PATH=" + t.TempDir()} // no sshd, no ip, no curl
	rc, out, id := demoRun(t, env)
	if !strings.Contains(out, "runs the built-in SSH gateway") {
		t.Errorf("without sshd on PATH the demo's gateway should be shunt gateway:\n%s", out)
	}
	demoCheck(t, rc, out, id)
}

// TestDemoKeepDown leaves the world up, tries the printed commands, and
// removes it with --down.
func TestDemoKeepDown(t *testing.T) {
	prerequisites(t, "curl")
	rc, out, id := demoRun(t, nil, "--keep")
	if rc != 0 {
		t.Fatalf("shunt demo --keep exited %d:\n%s", rc, out)
	}
	client := "shunt-demo-" + id + "-c"
	for _, w := range []string{"sudo ip netns exec " + client + " curl http://203.0.113.2/", "shunt status --socket ", "sudo shunt demo --down " + id} {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q:\n%s", w, out)
		}
	}
	if got := run(t, "ip", "netns", "exec", client, "curl", "-sS", "--max-time", "20", "http://203.0.113.2/"); !strings.Contains(got, "Hello from the internal host") {
		t.Errorf("curl in the kept world got %q", got)
	}
	if b, err := exec.Command("ip", "netns", "exec", client, "curl", "-sS", "--max-time", "20", "http://203.0.113.2:23/").CombinedOutput(); err == nil || !strings.Contains(string(b), "Couldn't connect") {
		t.Errorf("curl to the blocked port: %v %s", err, b)
	}
	st, err := exec.Command(shuntBin, "status", "--socket", filepath.Join(os.TempDir(), "shunt-demo-"+id, "shunt.sock")).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "connected") {
		t.Errorf("shunt status in the kept world: %v\n%s", err, st)
	}
	down, err := exec.Command(shuntBin, "demo", "--down", id).CombinedOutput()
	if err != nil || !strings.Contains(string(down), "removed demo world "+id) {
		t.Errorf("shunt demo --down: %v\n%s", err, down)
	}
	if left := demoLeftovers(id); len(left) > 0 {
		t.Errorf("shunt demo --down left behind: %q", left)
	}
}
