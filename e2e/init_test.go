//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// shunt init as a newcomer runs it, against Debian's sshd: the gateway is
// a Host of the user's ~/.ssh/config, its host key is not yet known. Without
// --accept init shows the fingerprint and writes nothing; with it, it
// records the key as ssh would, writes the file, and shunt check passes;
// shunt up with that file carries a flow. A second run does not replace
// the file without --force, and a login the server refuses writes
// nothing and says why.
func TestInit(t *testing.T) {
	prerequisites(t, "ssh-keygen")
	topo := newTopology(t)
	sd := startSSHD(t, topo.gateway)
	target := "172.31.2.2:9003"
	echoOn(t, topo.internal, target)

	home := t.TempDir()
	dotSSH := filepath.Join(home, ".ssh")
	if err := os.Mkdir(dotSSH, 0o700); err != nil {
		t.Fatal(err)
	}
	sshConfig := fmt.Sprintf("Host gw\n  HostName %s\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n", gatewayAddr, sd.clientKey)
	if err := os.WriteFile(filepath.Join(dotSSH, "config"), []byte(sshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	knownHosts := filepath.Join(dotSSH, "known_hosts")
	out := filepath.Join(t.TempDir(), "shunt.yaml")

	// initCmd runs shunt init in the client namespace as a user whose home
	// is home, with no terminal (a session of its own), no agent and no
	// askpass: nobody can be asked anything.
	initCmd := func(t *testing.T, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := topo.client.command(append([]string{shuntBin, "init"}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "SUDO_USER=", "SSH_AUTH_SOCK=", "SSH_ASKPASS=", "DISPLAY=", "WAYLAND_DISPLAY=")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		var so, se bytes.Buffer
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return so.String(), se.String(), code
	}
	mustContain := func(t *testing.T, what, text string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, text)
			}
		}
	}
	noFile := func(t *testing.T, path string) {
		t.Helper()
		if _, err := os.Stat(path); err == nil {
			data, _ := os.ReadFile(path)
			t.Fatalf("%s was written:\n%s", path, data)
		}
	}

	t.Run("unknown host key", func(t *testing.T) {
		so, se, code := initCmd(t, "gw", "--capture", "172.31.2.0/24", "--output", out)
		if code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, so, se)
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", so, se)
		mustContain(t, "stdout", so, "from ssh_config", "HostName "+gatewayAddr, "User root", "IdentityFile "+sd.clientKey)
		mustContain(t, "stderr", se, sd.fingerprint, "--accept", knownHosts, "nothing written to "+out)
		noFile(t, out)
		noFile(t, knownHosts)
	})

	t.Run("accept", func(t *testing.T) {
		so, se, code := initCmd(t, "gw", "--capture", "172.31.2.0/24", "--ports", "9003", "--output", out, "--accept")
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, so, se)
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", so, se)
		mustContain(t, "stdout", so, sd.fingerprint, "recorded now in "+knownHosts, "wrote "+out, "OK: 1 profiles, 1 rules", "next: sudo shunt up --config "+out)
		// The line ssh itself finds.
		run(t, "ssh-keygen", "-F", gatewayAddr, "-f", knownHosts)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		mustContain(t, "the written file", string(data), `ssh_config: "gw"`, "ports: [9003]")
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})

	t.Run("works", func(t *testing.T) {
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		cfg := string(data) + "tun:\n  name: " + topo.tunName() + "\n"
		sh := startShuntWith(t, topo, cfg, shuntOptions{env: []string{"HOME=" + home}})
		if err := echo(topo.client, target, []byte("through the config shunt init wrote")); err != nil {
			t.Fatalf("flow: %v\n%s", err, sh.log)
		}
		sh.stop(t)
	})

	t.Run("no overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(out)
		_, se, code := initCmd(t, "gw", "--capture", "10.9.0.0/16", "--output", out)
		if code != 1 {
			t.Fatalf("exit %d, want 1: %s", code, se)
		}
		mustContain(t, "stderr", se, "--force")
		if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
			t.Fatal("file changed without --force")
		}
		// With --force the key is known now: nothing to accept.
		so, se, code := initCmd(t, "gw", "--capture", "10.9.0.0/16", "--output", out, "--force")
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, so, se)
		}
		mustContain(t, "stdout", so, sd.fingerprint, "known in "+knownHosts)
		if after, _ := os.ReadFile(out); !strings.Contains(string(after), "10.9.0.0/16") {
			t.Fatalf("file not replaced with --force:\n%s", after)
		}
	})

	t.Run("login refused", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "id_other")
		run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other)
		fp := strings.Fields(run(t, "ssh-keygen", "-l", "-f", other+".pub"))[1]
		out2 := filepath.Join(t.TempDir(), "refused.yaml")
		// Not a Host of ssh_config: the profile gets host: and the flags.
		so, se, code := initCmd(t, "root@"+gatewayAddr, "--identity", other, "--known-hosts", knownHosts, "--capture", "172.31.2.0/24", "--output", out2)
		if code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, so, se)
		}
		if strings.Contains(so, "from ssh_config") {
			t.Errorf("an address ssh_config does not name was taken from it:\n%s", so)
		}
		t.Logf("stdout:\n%s\nstderr:\n%s", so, se)
		mustContain(t, "stderr", se, "root", fp, "nothing written to "+out2, "ssh -i "+other)
		noFile(t, out2)
	})
}
