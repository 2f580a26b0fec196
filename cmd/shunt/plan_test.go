package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The rule checks' warnings name the file and line of both rules.
func TestShadowWarningsNameFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(`rules:
  - name: wide
    destinations: [10.0.0.0/8]
    action: block
  - name: narrow
    destinations: [10.1.0.0/16]
    ports: [25]
    action: block
`), 0o600)
	var out, errOut strings.Builder
	if code := run([]string{"check", "--global", "", "--user-config", "", "--config", path}, &out, &errOut); code != 0 {
		t.Fatalf("check: exit %d: %s", code, errOut.String())
	}
	want := path + `:5: rule #2 can never match: rule #1 (` + path + `:2) before it matches everything it would`
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("check says:\n%s\nwant a warning with\n%s", errOut.String(), want)
	}
}
