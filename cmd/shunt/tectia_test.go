package main

import (
	"bytes"
	"strings"
	"testing"
)

// import-tectia says on stderr what it converted to what shunt does
// instead, not only in the YAML (which usually goes to a file).
func TestImportTectiaNotes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"import-tectia", "../../tectia/testdata/manpage-default-settings.xml"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"manpage-default-settings.xml:38: note: default-settings: keepalive-interval 0 sends no keepalives",
		"manpage-default-settings.xml:56: note: logging: shunt writes its log to standard error",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("the YAML does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(errOut.String(), "not converted") {
		t.Errorf("problems reported:\n%s", errOut.String())
	}
}
