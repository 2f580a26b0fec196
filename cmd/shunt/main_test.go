package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// fixedHome makes the home directory of the user shunt acts for a new
// directory (config.Machine.ActingUser: $HOME, when not under sudo), so
// that no test depends on the machine's. It holds .ssh/known_hosts.
func fixedHome(t *testing.T) string {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SUDO_USER", "")
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), nil, 0o600)
	return home
}

func TestCheckExample(t *testing.T) {
	home := fixedHome(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", "../../examples/mail.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("check examples/mail.yaml = %d: %s", code, errOut.String())
	}
	if want := "OK: 1 profiles, 2 rules, captures 10.1.0.0/24, fd00:1::/64"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q does not contain %q", out.String(), want)
	}
	// The example's key is not there: a warning (the agent may have one),
	// at its line.
	key := filepath.Join(home, ".ssh", "id_ed25519")
	want := "warning: ../../examples/mail.yaml:10: profile \"office\": identity file " + key + " does not exist: fix the path, or make the key with ssh-keygen -t ed25519 -f " + key +
		"; shunt tries the ssh-agent's keys, keyboard-interactive, password\n"
	if errOut.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut.String(), want)
	}
}

// A profile that cannot work is an error that stops check (and up); a
// warning does not.
func TestCheckFileProblems(t *testing.T) {
	home := fixedHome(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("profiles:\n  - name: p\n    host: gw\n    port: 2200\n    known_hosts: ~/.ssh/corp_hosts\nrules:\n  - action: tunnel\n    profile: p\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "-c", path}, &out, &errOut); code != 1 || out.Len() != 0 {
		t.Fatalf("check = %d, stdout %q, want 1 and nothing", code, out.String())
	}
	kh := filepath.Join(home, ".ssh", "corp_hosts")
	if want := path + ":5: profile \"p\": known_hosts file " + kh + " does not exist: with host_key_policy strict (the default), every connection to gw will be refused. " +
		"Add the server's host key with: ssh-keyscan -p 2200 gw >> " + kh; !strings.HasPrefix(errOut.String(), want) {
		t.Errorf("stderr:\n%s\nwant it to start with:\n%s", errOut.String(), want)
	}
	os.WriteFile(kh, nil, 0o600)
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--global", "", "--user-config", "", "-c", path}, &out, &errOut); code != 0 || errOut.Len() != 0 {
		t.Errorf("with the file: check = %d, stderr %q", code, errOut.String())
	}
}

func TestCheckReportsEveryError(t *testing.T) {
	fixedHome(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("profiles:\n  - name: p\n    hots: gw\nrules:\n  - action: tunnel\n    profile: q\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "-c", path}, &out, &errOut); code != 1 {
		t.Fatalf("check = %d, want 1", code)
	}
	want := []string{
		path + `:3: unknown key "hots" in profiles: did you mean "host"?`,
		path + `:2: profile "p" has no host: add host: with the SSH server's name or address (or a list, tried in order); only rules with host_from_application can use a profile without one`,
		path + `:5: rule #1: unknown profile "q": use one of p`,
	}
	if got := strings.Split(strings.TrimSpace(errOut.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "shunt up [--config FILE]") {
		t.Errorf("no args: %d %q", code, errOut.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %q", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"up", "--global", "", "--user-config", ""}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no configuration: ") {
		t.Errorf("up without any configuration: %d %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "shunt ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// Help is asked for, not a mistake: every command prints its flags to
// stdout and exits 0, as shunt --help does; a real flag error still exits
// 2 and says so on stderr.
func TestHelpAndFlagErrors(t *testing.T) {
	for _, cmd := range []string{"up", "check", "explain", "import-tectia", "version"} {
		for _, h := range []string{"-h", "-help", "--help"} {
			var out, errOut bytes.Buffer
			code := run([]string{cmd, h}, &out, &errOut)
			if code != 0 || errOut.Len() > 0 || !strings.Contains(out.String(), "Usage of shunt "+cmd) {
				t.Errorf("shunt %s %s = %d, stdout %q, stderr %q; want 0 and the usage on stdout only", cmd, h, code, out.String(), errOut.String())
			}
		}
		var out, errOut bytes.Buffer
		code := run([]string{cmd, "--no-such-flag"}, &out, &errOut)
		if code != 2 || out.Len() > 0 || !strings.Contains(errOut.String(), "flag provided but not defined: -no-such-flag") {
			t.Errorf("shunt %s --no-such-flag = %d, stdout %q, stderr %q; want 2 and the error on stderr only", cmd, code, out.String(), errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"up", "--config"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "flag needs an argument: -config") {
		t.Errorf("shunt up --config = %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"check", "--global", "", "--user-config", "", "-c", "../../examples/mail.yaml", "-h"}, &out, &errOut); code != 0 || strings.Contains(out.String(), "OK:") {
		t.Errorf("shunt check -c FILE -h = %d, %q: want the usage, not a check", code, out.String())
	}
}

// The version names the code: a test binary records no version, and says
// so with what to do instead of a bare "(devel)".
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("version = %d: %s", code, errOut.String())
	}
	got := out.String()
	if !strings.HasPrefix(got, "shunt ") || strings.Contains(got, "(devel)") || !strings.Contains(got, "main.versionOverride") {
		t.Errorf("version of a test binary = %q: want shunt, no bare (devel), and how to record a version", got)
	}
}

func TestDescribeBuild(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	vcs := settings("vcs", "git", "vcs.revision", "6591368abcdef0123456789abcdef0123456789a", "vcs.time", "2026-12-01T21:40:12Z", "vcs.modified", "true")
	for _, c := range []struct {
		name, override string
		bi             *debug.BuildInfo
		want           string
	}{
		{"release", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "v1.2.0"},
		{"go build in a clone", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201214012-6591368abcde+dirty"}, Settings: vcs}, "v0.0.0-20261201214012-6591368abcde+dirty"},
		{"vcs info only", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs}, "devel 6591368abcde (2026-12-01, modified)"},
		{"vcs info, clean", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: settings("vcs.revision", "6591368abcdef", "vcs.modified", "false")}, "devel 6591368abcde"},
		{"override wins", "1.3.0-rc1", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}, "1.3.0-rc1"},
	} {
		if got := describeBuild(c.bi, c.override); got != c.want {
			t.Errorf("%s: describeBuild = %q, want %q", c.name, got, c.want)
		}
	}
	for _, bi := range []*debug.BuildInfo{nil, {Main: debug.Module{Version: "(devel)"}}} {
		if got := describeBuild(bi, ""); !strings.HasPrefix(got, "devel, ") {
			t.Errorf("describeBuild(%v) = %q: want devel and why there is nothing more", bi, got)
		}
	}
}

// The README's way to stamp a version: the variable is really there.
func TestVersionOverrideAtBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds shunt")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build shunt with")
	}
	bin := filepath.Join(t.TempDir(), "shunt")
	build := exec.Command(goTool, "build", "-ldflags", "-X main.versionOverride=1.2.3-test", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "shunt 1.2.3-test (" + runtime.Version(); !strings.HasPrefix(string(out), want) {
		t.Errorf("shunt version = %q, want it to start with %q", out, want)
	}
}

// Each configuration file is logged with its role in words, never as
// "read the config configuration".
func TestUpLogsLayers(t *testing.T) {
	dir := t.TempDir()
	global, extra := filepath.Join(dir, "global.yaml"), filepath.Join(dir, "extra.yaml")
	os.WriteFile(global, []byte("log:\n  level: info\n"), 0o600)
	// tun: lo exists, so up stops (as root) before it changes anything;
	// without root it stops earlier. Either way after logging the files.
	os.WriteFile(extra, []byte("tun:\n  name: lo\n"), 0o600)
	user := filepath.Join(dir, "user.yaml")
	os.WriteFile(user, []byte("tun:\n  name: lo\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"up", "--global", global, "--user-config", user, "--config", extra}, &out, &errOut); code != 1 {
		t.Fatalf("up = %d, want 1 (no root, or device lo exists): %s", code, errOut.String())
	}
	log := errOut.String()
	for _, want := range []string{
		`msg="read the global configuration" file=` + global,
		`msg="read the user's configuration" file=` + user,
		`msg="read a configuration file given with --config" file=` + extra,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// The split-DNS example checks, and check says what is captured by name
// and how names are answered.
func TestCheckSplitDNSExample(t *testing.T) {
	fixedHome(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", "../../examples/corp-dns.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("check examples/corp-dns.yaml = %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"OK: 1 profiles, 2 rules, captures 10.1.0.0/16 and, by name, mail.corp.example\n",
		"split DNS: mode auto, fake addresses from 198.18.0.0/15, fd53:6875:6e74:fa6e::/64; corp.example resolved by 10.1.0.53:53 through profile office\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output %q does not contain %q", out.String(), want)
		}
	}
}

// shunt check warns, at its line, about a profile that serves every user.
func TestCheckWarnsProfileForEveryUser(t *testing.T) {
	fixedHome(t)
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("profiles:\n  - name: p\n    host: gw\n    allowed_users: any\nrules:\n  - action: tunnel\n    profile: p\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "-c", path}, &out, &errOut); code != 0 {
		t.Fatalf("check = %d: %s", code, errOut.String())
	}
	if want := "warning: " + path + ":4: profile \"p\" serves every user: with allowed_users: any"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr:\n%s\nwant it to contain:\n%s", errOut.String(), want)
	}
}
