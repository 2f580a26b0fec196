package config

import (
	"errors"
	"os"
	"regexp"
	"testing"
)

// FuzzParse: no input makes the parser panic, and every problem it reports
// names the file and a line within it.
func FuzzParse(f *testing.F) {
	f.Add(example)
	f.Add("profiles:\n  - name: p\n    host: gw\n   port: 22\n")
	f.Add("profiles:\n  - name: p\n\thost: gw\n")
	f.Add("rules:\n  - action: block\n    ports: [25, 110\n  - action: direct\n")
	f.Add("profiles:\n  - name: p\n    ssh_config: alias\n    identity_files: [~/.ssh/id, /k]\n    known_hosts: [/a, /b]\nrules:\n  - action: tunnel\n    profile: p\n    users: [alice, nobody]\n")
	f.Add("log: &a\n  level: *a\n---\nx: [\n")
	f.Add("metrics:\n  listen: \"[::1]:9559\"\nrules:\n  - action: block\n")
	f.Add("rules:\n  - sources: [192.168.50.0/24, lan.example, any, \"fd50::1-fd50::9\", []]\n    action: block\n")
	if b, err := os.ReadFile("../examples/mail.yaml"); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, data string) {
		e := newTestEnv(t)
		c, err := e.parse("f.yaml", data)
		// Lines as YAML counts them: LF, CRLF, CR, NEL, LS and PS end one.
		lines := 1 + len(regexp.MustCompile("\r\n|[\r\n\u0085\u2028\u2029]").FindAllStringIndex(data, -1))
		check := func(what, file string, line int, msg string) {
			if file != "f.yaml" || line < 1 || line > lines || msg == "" {
				t.Errorf("%s at %s:%d (the file has %d lines): %q", what, file, line, lines, msg)
			}
		}
		if err != nil {
			for _, e := range leaves(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Errorf("error %v is a %T, not a *config.Error", e, e)
					continue
				}
				check("error", ce.File, ce.Line, ce.Msg)
			}
			return
		}
		for _, p := range c.Problems {
			check("problem", p.File, p.Line, p.Msg)
		}
	})
}

// leaves are the errors joined in err.
func leaves(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}
