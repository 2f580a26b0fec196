package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExample(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", "../../examples/mail.yaml"}, &out, &errOut); code != 0 {
		t.Fatalf("check examples/mail.yaml = %d: %s", code, errOut.String())
	}
	if want := "OK: 1 profiles, 2 rules, captures 10.1.0.0/24, fd00:1::/64"; !strings.Contains(out.String(), want) {
		t.Errorf("output %q does not contain %q", out.String(), want)
	}
}

func TestCheckReportsEveryError(t *testing.T) {
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
