package platform

import (
	"bufio"
	"bytes"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"

	"github.com/shunt-dev/shunt/internal/netlayout"
	"github.com/shunt-dev/shunt/internal/testns"
)

// A resolv.conf as odd as real ones get: a header, CRLF, no final newline.
const origResolvConf = "# my own file\nsearch lab.example corp.example\r\nnameserver 192.0.2.1\nnameserver 2001:db8::53\noptions edns0 trust-ad\n\n;end\nsortlist 10.0.0.0/8"

func shuntCfg(domains ...string) DNSConfig {
	return DNSConfig{Nameservers: []netip.Addr{netlayout.DNS6, netlayout.DNS4}, Domains: domains, Device: "shunt0"}
}

// fileState is a file's exact state: bytes and mode, or a link's target.
func fileState(t *testing.T, path string) string {
	t.Helper()
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return "missing"
	}
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(path)
		return "symlink " + target
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().String() + " " + string(data)
}

// dnsDirs makes a state directory and a resolv.conf path in a temp dir.
func dnsDirs(t *testing.T) (state, rc string) {
	dir := t.TempDir()
	return filepath.Join(dir, "state"), filepath.Join(dir, "etc", "resolv.conf")
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

// checkShunts checks that rc is shunt's file for cfg, keeping the original's
// search and options lines.
func checkShunts(t *testing.T, rc string) {
	t.Helper()
	data, err := os.ReadFile(rc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	want := "nameserver 169.254.83.53\nnameserver fd53:6875:6e74::53\nsearch lab.example corp.example\noptions edns0 trust-ad\n"
	if !strings.HasPrefix(s, dnsMarker) || !strings.HasSuffix(s, want) {
		t.Errorf("%s while shunt runs:\n%s\nwant the marker first and to end in:\n%s", rc, s, want)
	}
}

func TestFileDNSRestoresByteForByte(t *testing.T) {
	state, rc := dnsDirs(t)
	writeFile(t, rc, origResolvConf, 0o640)
	before := fileState(t, rc)
	d, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if d.Mode() != DNSModeFile {
		t.Fatalf("auto chose %q for a plain file", d.Mode())
	}
	if got := d.Upstreams(); len(got) != 2 || got[0].String() != "192.0.2.1:53" || got[1].String() != "[2001:db8::53]:53" {
		t.Errorf("upstreams %v", got)
	}
	if err := d.Set(shuntCfg("corp.example")); err != nil {
		t.Fatal(err)
	}
	checkShunts(t, rc)
	if fi, _ := os.Stat(rc); fi.Mode().Perm() != 0o640 {
		t.Errorf("shunt's file has mode %v, want the original's", fi.Mode())
	}
	backup := filepath.Join(state, backupName)
	if b, err := os.ReadFile(backup); err != nil || !bytes.HasSuffix(b, []byte(origResolvConf)) {
		t.Errorf("backup: %v\n%s", err, b)
	}
	// A reload: new domains, the same file, the backup still the original.
	if err := d.Set(shuntCfg("corp.example", "lab.example")); err != nil {
		t.Fatal(err)
	}
	checkShunts(t, rc)
	if got := d.Upstreams(); len(got) != 2 || got[0].String() != "192.0.2.1:53" {
		t.Errorf("upstreams after Set %v: want the original's", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, rc); after != before {
		t.Errorf("after Close:\n%q\nwant\n%q", after, before)
	}
	if _, err := os.Lstat(backup); !os.IsNotExist(err) {
		t.Errorf("the backup is still there: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := d.Set(shuntCfg()); err == nil {
		t.Error("Set after Close worked")
	}
	if fileState(t, rc) != before {
		t.Error("Set after Close changed the file")
	}
	assertNoTemps(t, filepath.Dir(rc), state)
}

// assertNoTemps checks that no temporary file was left in the dirs.
func assertNoTemps(t *testing.T, dirs ...string) {
	t.Helper()
	for _, dir := range dirs {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".shunt-") && e.Name() != backupName {
				t.Errorf("temporary file %s left in %s", e.Name(), dir)
			}
		}
	}
}

func TestFileDNSSymlinkAndMissing(t *testing.T) {
	for _, tc := range []struct {
		name, target string
	}{
		{"relative link", "../run/real-resolv.conf"},
		{"absolute dangling link", "/nonexistent/shunt-test/resolv.conf"},
		{"no file", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, rc := dnsDirs(t)
			os.MkdirAll(filepath.Dir(rc), 0o755)
			real := filepath.Join(filepath.Dir(rc), "..", "run", "real-resolv.conf")
			writeFile(t, real, "nameserver 192.0.2.9\nsearch x.example\n", 0o644)
			if tc.target != "" {
				if err := os.Symlink(tc.target, rc); err != nil {
					t.Fatal(err)
				}
			}
			before, realBefore := fileState(t, rc), fileState(t, real)
			d, err := NewOSDNS(DNSOptions{Mode: DNSModeFile, StateDir: state, ResolvConf: rc, Log: quietLog()})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Set(shuntCfg()); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Lstat(rc)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("resolv.conf while shunt runs: %v, %v; want a file of its own", fi, err)
			}
			if fileState(t, real) != realBefore {
				t.Error("shunt wrote through the link into its target")
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if after := fileState(t, rc); after != before {
				t.Errorf("after Close %q, want %q", after, before)
			}
			assertNoTemps(t, filepath.Dir(rc), state)
		})
	}
}

func TestFileDNSCrashThenCleanUp(t *testing.T) {
	state, rc := dnsDirs(t)
	writeFile(t, rc, origResolvConf, 0o644)
	before := fileState(t, rc)
	opts := DNSOptions{Mode: DNSModeFile, StateDir: state, ResolvConf: rc, Log: quietLog()}
	d, err := NewOSDNS(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(shuntCfg("corp.example")); err != nil {
		t.Fatal(err)
	}
	// No Close: the process died. The next start must not trust
	// shunt's own file for upstreams.
	for _, mode := range []string{DNSModeAuto, DNSModeFile, DNSModeOff} {
		opts := opts
		opts.Mode = mode
		if _, err := NewOSDNS(opts); err == nil || !strings.Contains(err.Error(), "written by shunt") {
			t.Errorf("NewOSDNS(%s) over a leftover: %v", mode, err)
		}
	}
	log, hook := test.NewNullLogger()
	opts.Log = log
	if err := CleanUpDNS(opts); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, rc); after != before {
		t.Errorf("after CleanUpDNS %q, want %q", after, before)
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "restored") {
		t.Errorf("log: %v", hook.AllEntries())
	}
	if _, err := os.Lstat(filepath.Join(state, backupName)); !os.IsNotExist(err) {
		t.Errorf("backup left: %v", err)
	}
	// Nothing left: a second clean-up and a fresh start are quiet.
	hook.Reset()
	if err := CleanUpDNS(opts); err != nil || len(hook.AllEntries()) != 0 {
		t.Errorf("second CleanUpDNS: %v, %v", err, hook.AllEntries())
	}
	if _, err := NewOSDNS(opts); err != nil {
		t.Error(err)
	}
}

func TestFileDNSSomeoneElseRewrote(t *testing.T) {
	for _, crash := range []bool{false, true} {
		state, rc := dnsDirs(t)
		writeFile(t, rc, origResolvConf, 0o644)
		log, hook := test.NewNullLogger()
		opts := DNSOptions{StateDir: state, ResolvConf: rc, Log: log}
		d, err := NewOSDNS(opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Set(shuntCfg()); err != nil {
			t.Fatal(err)
		}
		theirs := "# Generated by NetworkManager\nnameserver 10.9.9.9\n"
		writeFile(t, rc, theirs, 0o644)
		if crash {
			err = CleanUpDNS(opts)
		} else {
			err = d.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(rc); string(got) != theirs {
			t.Errorf("crash %v: shunt replaced a file someone else wrote: %q", crash, got)
		}
		if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel {
			t.Errorf("crash %v: no warning: %v", crash, hook.AllEntries())
		}
		if _, err := os.Lstat(filepath.Join(state, backupName)); !os.IsNotExist(err) {
			t.Errorf("crash %v: backup left: %v", crash, err)
		}
	}
}

func TestFileDNSDamagedBackup(t *testing.T) {
	state, rc := dnsDirs(t)
	writeFile(t, rc, origResolvConf, 0o644)
	opts := DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()}
	d, err := NewOSDNS(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(shuntCfg()); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(state, backupName)
	data, _ := os.ReadFile(backup)
	writeFile(t, backup, string(data[:len(data)-3]), 0o600)
	if err := CleanUpDNS(opts); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("CleanUpDNS with a damaged backup: %v", err)
	}
	if _, err := os.Lstat(backup); err != nil {
		t.Error("the damaged backup was removed although nothing restored the file")
	}
	// A backup of a file that exists no more in NewOSDNS's way.
	if _, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: filepath.Join(t.TempDir(), "other"), Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "CleanUpDNS") {
		t.Errorf("NewOSDNS with a backup in the state dir: %v", err)
	}
}

func TestFileDNSFailedWrite(t *testing.T) {
	state, rc := dnsDirs(t)
	rc = filepath.Join(rc, "no-such-dir", "resolv.conf")
	d, err := NewOSDNS(DNSOptions{Mode: DNSModeFile, StateDir: state, ResolvConf: rc, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(shuntCfg()); err == nil || strings.Contains(err.Error(), "restoring") || !strings.Contains(err.Error(), rc) {
		t.Errorf("Set into a missing directory: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(state, backupName)); !os.IsNotExist(err) {
		t.Errorf("a failed first Set left its backup: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Error(err)
	}
}

func TestFileDNSNeedsStateDir(t *testing.T) {
	_, rc := dnsDirs(t)
	writeFile(t, rc, origResolvConf, 0o644)
	if _, err := NewOSDNS(DNSOptions{ResolvConf: rc, Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "state_dir") {
		t.Errorf("no state dir: %v", err)
	}
	if err := CleanUpDNS(DNSOptions{ResolvConf: rc}); err != nil {
		t.Errorf("CleanUpDNS without a state dir: %v", err)
	}
}

func TestAutoRefusesManagedFiles(t *testing.T) {
	for _, tc := range []struct {
		name, content, link, owner string
	}{
		{"NetworkManager header", "# Generated by NetworkManager\nsearch lan\nnameserver 192.168.1.1\n", "", "NetworkManager"},
		{"resolvconf header", "# Dynamic resolv.conf(5) file for glibc resolver(3) generated by resolvconf(8)\n#     DO NOT EDIT THIS FILE BY HAND -- YOUR CHANGES WILL BE OVERWRITTEN\nnameserver 192.168.1.1\n", "", "resolvconf"},
		{"openresolv header", "# Generated by resolvconf\nnameserver 192.168.1.1\n", "", "resolvconf"},
		{"resolvconf link", "", "/run/resolvconf/resolv.conf", "resolvconf"},
		{"NetworkManager link", "", "/run/NetworkManager/resolv.conf", "NetworkManager"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state, rc := dnsDirs(t)
			if tc.link != "" {
				os.MkdirAll(filepath.Dir(rc), 0o755)
				if err := os.Symlink(tc.link, rc); err != nil {
					t.Fatal(err)
				}
			} else {
				writeFile(t, rc, tc.content, 0o644)
			}
			before := fileState(t, rc)
			_, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()})
			if err == nil {
				t.Fatal("auto accepted a file managed by " + tc.owner)
			}
			for _, want := range []string{tc.owner, "dns.mode: systemd-resolved", "resolv.conf", "off"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			// The explicit mode overrides, with a warning.
			log, hook := test.NewNullLogger()
			d, err := NewOSDNS(DNSOptions{Mode: DNSModeFile, StateDir: state, ResolvConf: rc, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			if e := hook.LastEntry(); e == nil || e.Level != logrus.WarnLevel || !strings.Contains(e.Message, tc.owner) {
				t.Errorf("no warning naming %s: %v", tc.owner, hook.AllEntries())
			}
			if err := d.Set(shuntCfg()); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if fileState(t, rc) != before {
				t.Errorf("not restored: %q", fileState(t, rc))
			}
		})
	}
}

func TestAutoWithoutResolvedOnTheBus(t *testing.T) {
	noBus := func() (*dbus.Conn, error) { return nil, errors.New("no system bus in this test") }
	// nameserver 127.0.0.53 but nobody answers: rewrite the file.
	state, rc := dnsDirs(t)
	writeFile(t, rc, "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n", 0o644)
	d, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Bus: noBus, Log: quietLog()})
	if err != nil || d.Mode() != DNSModeFile {
		t.Fatalf("auto over 127.0.0.53 without resolved: %v, %v", d, err)
	}
	// A link into resolved's files with no resolved: refuse.
	state, rc = dnsDirs(t)
	os.MkdirAll(filepath.Dir(rc), 0o755)
	os.Symlink("/run/systemd/resolve/stub-resolv.conf", rc)
	if _, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Bus: noBus, Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "dns.mode: resolv.conf") {
		t.Errorf("auto over resolved's link without resolved: %v", err)
	}
	if _, err := NewOSDNS(DNSOptions{Mode: DNSModeResolved, StateDir: state, ResolvConf: rc, Bus: noBus, Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "dns.mode systemd-resolved") {
		t.Errorf("systemd-resolved mode without resolved: %v", err)
	}
}

// TestDNSCrashHelper is not a test: the SIGKILL tests run it as a child
// process (crashHelperEnv set), which takes over resolv.conf and then waits
// to be killed.
func TestDNSCrashHelper(t *testing.T) {
	rc, state := os.Getenv(crashHelperEnv), os.Getenv(crashHelperEnv+"_STATE")
	if rc == "" {
		return
	}
	d, err := NewOSDNS(DNSOptions{Mode: DNSModeFile, StateDir: state, ResolvConf: rc, Log: quietLog()})
	if err == nil {
		err = d.Set(shuntCfg("corp.example"))
	}
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

const crashHelperEnv = "SHUNT_TEST_DNS_CRASH_RESOLV_CONF"

// killedAfterSet runs TestDNSCrashHelper in a child process on rc, waits
// until it has taken over the file, and kills it with SIGKILL.
func killedAfterSet(t *testing.T, rc, state string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDNSCrashHelper$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"="+rc, crashHelperEnv+"_STATE="+state)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("crash helper: %q %s", line, stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("crash helper did not die of SIGKILL: %v", err)
	}
}

func TestFileDNSSIGKILLThenCleanUp(t *testing.T) {
	state, rc := dnsDirs(t)
	writeFile(t, rc, origResolvConf, 0o600)
	before := fileState(t, rc)
	killedAfterSet(t, rc, state)
	checkShunts(t, rc)
	if err := CleanUpDNS(DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, rc); after != before {
		t.Errorf("after SIGKILL and CleanUpDNS %q, want %q", after, before)
	}
}

// TestFileDNSBindMounted runs in a private mount namespace (the test runs
// itself again under unshare), where a temporary file is bind-mounted over
// another, as a container's resolv.conf is: it must be rewritten in place
// and stay mounted, and come back byte for byte after Close and after
// SIGKILL and CleanUpDNS.
func TestFileDNSBindMounted(t *testing.T) {
	if os.Getenv(bindChildEnv) == "" {
		lack := ""
		if os.Geteuid() != 0 {
			lack = "needs root for a mount namespace"
		} else if _, err := exec.LookPath("unshare"); err != nil {
			lack = "needs unshare (Debian package util-linux)"
		}
		testns.Need(t, lack)
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^TestFileDNSBindMounted$", "-test.v")
		cmd.Env = append(os.Environ(), bindChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("--- PASS: TestFileDNSBindMounted")) {
			t.Fatalf("in a mount namespace: %v\n%s", err, out)
		}
		t.Logf("in a mount namespace:\n%s", out)
		return
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	rc := filepath.Join(dir, "etc", "resolv.conf")
	// As `ip netns exec` mounts /etc/netns/NAME/resolv.conf.
	src := filepath.Join(dir, "netns", "resolv.conf")
	writeFile(t, rc, "nameserver 198.51.100.1\n", 0o644)
	writeFile(t, src, origResolvConf, 0o640)
	if err := unix.Mount(src, rc, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(rc, unix.MNT_DETACH) })
	if !isMountRoot(rc) {
		t.Fatal("statx does not show the bind mount")
	}
	before := fileState(t, rc)
	d, err := NewOSDNS(DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Set(shuntCfg("corp.example")); err != nil {
		t.Fatal(err)
	}
	checkShunts(t, rc)
	checkShunts(t, src) // written in place: through the mount
	if !isMountRoot(rc) {
		t.Error("the bind mount is gone")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, rc); after != before || !isMountRoot(rc) {
		t.Errorf("after Close %q (mounted %v), want %q", after, isMountRoot(rc), before)
	}
	// The rename's fallback: a mount point statx did not report.
	if err := renameOver(rc, []byte("x\n"), 0o640, os.Geteuid(), os.Getegid()); err != nil || fileState(t, src) != "-rw-r----- x\n" {
		t.Errorf("replaceFile over a mount: %v, %q", err, fileState(t, src))
	}
	writeFile(t, rc, origResolvConf, 0o640)
	killedAfterSet(t, rc, state)
	checkShunts(t, src)
	if err := CleanUpDNS(DNSOptions{StateDir: state, ResolvConf: rc, Log: quietLog()}); err != nil {
		t.Fatal(err)
	}
	if after := fileState(t, rc); after != before || !isMountRoot(rc) {
		t.Errorf("after SIGKILL and CleanUpDNS %q (mounted %v), want %q", after, isMountRoot(rc), before)
	}
	assertNoTemps(t, filepath.Dir(rc), state)
}

const bindChildEnv = "SHUNT_TEST_DNS_BIND_CHILD"
