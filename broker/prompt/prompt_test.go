package prompt

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/broker"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func kind(p broker.Prompter) string {
	switch p := p.(type) {
	case nil:
		return "none"
	case *Serial:
		switch a := p.P.(type) {
		case *Terminal:
			return "terminal"
		case *Askpass:
			return "askpass:" + a.Program
		}
	}
	return "?"
}

// The choice follows ssh(1)'s SSH_ASKPASS_REQUIRE rules.
func TestFromEnv(t *testing.T) {
	tests := []struct {
		env  map[string]string
		tty  bool
		want string
	}{
		{map[string]string{}, true, "terminal"},
		{map[string]string{}, false, "none"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap"}, true, "terminal"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap"}, false, "none"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "DISPLAY": ":0"}, false, "askpass:/bin/ap"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "WAYLAND_DISPLAY": "w"}, false, "askpass:/bin/ap"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "SSH_ASKPASS_REQUIRE": "prefer"}, true, "askpass:/bin/ap"},
		{map[string]string{"SSH_ASKPASS_REQUIRE": "prefer"}, true, "terminal"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "SSH_ASKPASS_REQUIRE": "force"}, true, "askpass:/bin/ap"},
		{map[string]string{"SSH_ASKPASS_REQUIRE": "force"}, false, "askpass:" + DefaultAskpass},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "DISPLAY": ":0", "SSH_ASKPASS_REQUIRE": "never"}, false, "none"},
		{map[string]string{"SSH_ASKPASS": "/bin/ap", "SSH_ASKPASS_REQUIRE": "never"}, true, "terminal"},
	}
	for _, tt := range tests {
		if got := kind(FromEnv(env(tt.env), tt.tty)); got != tt.want {
			t.Errorf("FromEnv(%v, tty=%v) = %s, want %s", tt.env, tt.tty, got, tt.want)
		}
	}
}

// A real askpass program: a script that logs its prompt and answers.
func TestAskpassProgram(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "asked")
	script := filepath.Join(dir, "askpass")
	os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s|%s\\n' \"$SSH_ASKPASS_PROMPT\" \"$1\" >> "+log+"\necho s3cret\n"), 0o700)
	a := &Askpass{Program: script}
	got, err := a.Ask(context.Background(), broker.Question{Profile: "gw", Kind: broker.Passphrase, Text: "Enter passphrase for key 'k': "})
	if err != nil || got != "s3cret" {
		t.Fatalf("Ask = %q, %v", got, err)
	}
	ans, err := a.Ask(context.Background(), broker.Question{Profile: "gw", Kind: broker.HostKey, Text: "continue (yes/no)? "})
	if err != nil || ans != "s3cret" {
		t.Fatalf("host key Ask = %q, %v", ans, err)
	}
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || lines[0] != "|[shunt: profile gw] Enter passphrase for key 'k': " || !strings.HasPrefix(lines[1], "confirm|") {
		t.Fatalf("askpass saw %q", lines)
	}
	os.WriteFile(script, []byte("#!/bin/sh\nexit 1\n"), 0o700)
	if _, err := a.Ask(context.Background(), broker.Question{Kind: broker.Password}); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("cancelled Ask = %v", err)
	}
}
