package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitArgs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "s.yaml")
	var so, se bytes.Buffer
	// Missing --capture: usage error, nothing written.
	if rc := cmdInit([]string{"alice@gw.example.com", "--output", out}, &so, &se); rc != 2 {
		t.Fatalf("rc %d, want 2: %s", rc, se.String())
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("file written on a usage error")
	}
	// Host after the flags, comma list and repeated --capture.
	args := []string{"--capture", "10.1.0.0/16,10.2.0.0/16", "--capture", "10.3.0.0/16", "--ports", "25,993-995", "--no-check", "--output", out, "alice@gw.example.com"}
	if rc := cmdInit(args, &so, &se); rc != 0 {
		t.Fatalf("rc %d: %s", rc, se.String())
	}
	data, _ := os.ReadFile(out)
	for _, want := range []string{`"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"`, `user: "alice"`, `"993-995"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %s:\n%s", want, data)
		}
	}
	// Again without --force: refused.
	if rc := cmdInit(args, &so, &se); rc != 1 || !strings.Contains(se.String(), "--force") {
		t.Fatalf("rc %d, want a refusal naming --force: %s", rc, se.String())
	}
}
