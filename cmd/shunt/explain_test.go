package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const explainConfig = `profiles:
  - name: office
    host: gw.corp.example
    user: alice
  - name: bastion
    host: bastion.example
  - name: deep
    host: 10.2.0.9
    jump: bastion
rules:
  - name: no-plain-pop
    destinations: [10.1.0.0/24]
    ports: [110]
    action: block
  - name: mail
    destinations: [10.1.0.0/24, "fd00:1::/64"]
    ports: [25, 143, 587, "993-995"]
    action: tunnel
    profile: office
  - name: mutt
    applications: [/usr/bin/mutt]
    destinations: [10.2.0.0/16]
    action: direct
  - name: lab
    destinations: [10.2.0.0/16]
    action: tunnel
    profile: deep
    host_from_application: true
always_direct_applications: [backup]
`

func explain(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(explainConfig), 0o600)
	var out, errOut bytes.Buffer
	code := run(append([]string{"explain", "--global", "", "--user-config", "", "--config", path}, args...), &out, &errOut)
	return out.String(), errOut.String(), code
}

func TestExplainText(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"10.1.0.7:993"}, []string{
			"config  ", "shunt.yaml (read)",
			`no     rule #1 "no-plain-pop"    port 993 not in [110]`,
			`MATCH  rule #2 "mail"            destination 10.1.0.7 in 10.1.0.0/24, port 993 in 993-995`,
			`tunnel (rule #2 "mail") through profile office: SSH to alice@gw.corp.example port 22, direct, or as proxy_rules say`,
		}},
		{[]string{"10.1.0.7:110"}, []string{`block (rule #1 "no-plain-pop"): the application sees a refused connection`}},
		{[]string{"[fd00:1::5]:25"}, []string{`MATCH  rule #2 "mail"`}},
		{[]string{"--app", "/usr/bin/mutt", "10.2.3.4:22"}, []string{`application /usr/bin/mutt is /usr/bin/mutt`, `direct (rule #3 "mutt")`}},
		{[]string{"10.2.3.4:22", "--app", "/usr/bin/curl"}, []string{`no     rule #3 "mutt"            application /usr/bin/curl not in [/usr/bin/mutt]`,
			`SSH to `, `10.2.3.4 (the destination itself) port 22, through jump profile bastion`}},
		{[]string{"--app", "/opt/backup", "10.1.0.7:25"}, []string{"direct: application /opt/backup is always direct (backup)"}},
		{[]string{"192.0.2.1:80"}, []string{"direct: no rule matches: direct"}},
		{[]string{"10.1.0.7"}, []string{"no port given: rules that name ports do not match"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := explain(t, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	out, errOut, code := explain(t, "--json", "10.1.0.7:993", "--user", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var e explanation
	if err := json.Unmarshal([]byte(out), &e); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if e.Decision.Index != 2 || e.Decision.Action != "tunnel" || e.Decision.Profile != "office" || len(e.Steps) != 2 || e.Flow.UID == nil || *e.Flow.UID != 0 {
		t.Errorf("explanation = %+v", e)
	}
}

func TestImportTectiaCLI(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"import-tectia", "../../tectia/testdata/unconvertible.xml"}, &out, &errOut); code != 1 || out.Len() != 0 ||
		!strings.Contains(errOut.String(), "(not converted)") || !strings.Contains(errOut.String(), "use --best-effort") {
		t.Errorf("unconvertible: exit %d, stdout %d bytes, stderr %q", code, out.Len(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"import-tectia", "--best-effort", "../../tectia/testdata/unconvertible.xml"}, &out, &errOut); code != 0 || out.Len() == 0 {
		t.Errorf("best effort: exit %d, %q", code, errOut.String())
	}
	out.Reset()
	if code := run([]string{"import-tectia", "../../tectia/testdata/broker-config.xml"}, &out, &errOut); code != 0 {
		t.Fatalf("sample: exit %d: %s", code, errOut.String())
	}
	// The converted file is a valid shunt configuration.
	path := filepath.Join(t.TempDir(), "converted.yaml")
	os.WriteFile(path, out.Bytes(), 0o600)
	var cOut, cErr bytes.Buffer
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", path}, &cOut, &cErr); code != 0 {
		t.Errorf("shunt check of the converted file: exit %d\n%s\n--- converted:\n%s", code, cErr.String(), out.String())
	}
}

// explain knows names the way the data path does: from resolving the rules'
// host names, whichever way the destination is given.
func TestExplainNamesLikeTheDataPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(`rules:
  - name: by-name
    destinations: [localhost]
    action: block
  - name: wildcard
    destinations: ["*.example"]
    action: block
`), 0o600)
	ex := func(dest string) string {
		var out, errOut bytes.Buffer
		if code := run([]string{"explain", "--global", "", "--user-config", "", "--config", path, dest}, &out, &errOut); code != 0 {
			t.Fatalf("explain %s: exit %d: %s", dest, code, errOut.String())
		}
		return out.String()
	}
	if out := ex("localhost:25"); !strings.Contains(out, `block (rule #1 "by-name")`) {
		t.Errorf("by name:\n%s", out)
	}
	if out := ex("127.0.0.1:25"); !strings.Contains(out, `block (rule #1 "by-name")`) {
		t.Errorf("by the address the name resolves to:\n%s", out)
	}
	// A typed name no rule resolves is unknown to the data path too.
	if out := ex("host.example:25"); !strings.Contains(out, "direct: no rule matches") {
		t.Errorf("a name shunt never resolves:\n%s", out)
	}
}
