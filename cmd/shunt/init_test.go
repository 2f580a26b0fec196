package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/starter"
)

// testInit runs shunt init with answers as what the user types at the
// terminal (ask), or no terminal at all (answers empty).
func testInit(args []string, answers string) (stdout, stderr string, code int) {
	var so, se bytes.Buffer
	r := &initRun{
		in:     bufio.NewReader(strings.NewReader(answers)),
		ask:    answers != "",
		getenv: func(string) string { return "" },
		stdout: &so, stderr: &se,
	}
	code = r.run(args)
	return so.String(), se.String(), code
}

func TestInitArgs(t *testing.T) {
	out := filepath.Join(t.TempDir(), "s.yaml")
	// Missing --capture: usage error, nothing written.
	if _, se, rc := testInit([]string{"alice@gw.example.com", "--output", out}, ""); rc != 2 {
		t.Fatalf("rc %d, want 2: %s", rc, se)
	}
	if _, err := os.Stat(out); err == nil {
		t.Fatal("file written on a usage error")
	}
	// Host after the flags, comma list and repeated --capture.
	args := []string{"--capture", "10.1.0.0/16,10.2.0.0/16", "--capture", "10.3.0.0/16", "--ports", "25,993-995", "--no-check", "--output", out, "alice@gw.example.com"}
	if _, se, rc := testInit(args, ""); rc != 0 {
		t.Fatalf("rc %d: %s", rc, se)
	}
	data, _ := os.ReadFile(out)
	for _, want := range []string{`"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"`, `user: "alice"`, `"993-995"`, `host: "gw.example.com"`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %s:\n%s", want, data)
		}
	}
	// Again without --force: refused, before any login.
	if _, se, rc := testInit(args, ""); rc != 1 || !strings.Contains(se, "--force") {
		t.Fatalf("rc %d, want a refusal naming --force: %s", rc, se)
	}
	// A destination config refuses: no file, the error says so.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if _, se, rc := testInit([]string{"a@gw", "--capture", "10.1.0.0/33", "--no-check", "--output", bad}, ""); rc != 1 || !strings.Contains(se, "10.1.0.0/33") {
		t.Fatalf("rc %d, want the bad network named: %s", rc, se)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Fatal("file written for a refused network")
	}
	// A host name that would break the file.
	if _, se, rc := testInit([]string{"a@gw\nrules:", "--capture", "10.1.0.0/16", "--no-check", "--output", bad}, ""); rc != 1 {
		t.Fatalf("rc %d, want a refusal: %s", rc, se)
	}
}

// At a terminal, init asks for what the flags left out.
func TestInitQuestions(t *testing.T) {
	out := filepath.Join(t.TempDir(), "s.yaml")
	so, se, rc := testInit([]string{"--no-check", "--output", out}, "bob@gw.example.net\n\n10.5.0.0/16, 10.6.0.0/16\n22,443\n")
	if rc != 0 {
		t.Fatalf("rc %d: %s", rc, se)
	}
	for _, q := range []string{"SSH server", "Networks", "ports"} {
		if !strings.Contains(so, q) {
			t.Errorf("no question about %s:\n%s", q, so)
		}
	}
	data, _ := os.ReadFile(out)
	for _, want := range []string{`user: "bob"`, `"10.5.0.0/16", "10.6.0.0/16"`, "ports: [22, 443]"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("config lacks %s:\n%s", want, data)
		}
	}
	// The answers end early: a usage error, no file.
	out2 := filepath.Join(t.TempDir(), "s.yaml")
	if _, _, rc := testInit([]string{"--no-check", "--output", out2}, "bob@gw.example.net\n"); rc != 2 {
		t.Fatalf("rc %d, want 2", rc)
	}
	if _, err := os.Stat(out2); err == nil {
		t.Fatal("file written without networks")
	}
}

// A host that ssh_config names becomes a profile filled from it; one it
// does not name gets host:.
func TestInitSSHConfigHost(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("SUDO_USER", "")
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte("Host office\n  HostName 192.0.2.9\n  Port 2222\n  User carol\n"), 0o600)
	path := filepath.Join(t.TempDir(), "s.yaml")
	data, cfg, err := render(starterOptions("office"), path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := cfg.Profile("gateway")
	if !strings.Contains(string(data), `ssh_config: "office"`) || p.Host[0] != "192.0.2.9" || p.Port != 2222 || p.User != "carol" {
		t.Fatalf("profile %+v from:\n%s", p, data)
	}
	data, cfg, err = render(starterOptions("gw.example.com"), path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ = cfg.Profile("gateway")
	if strings.Contains(string(data), "ssh_config:") || p.Host[0] != "gw.example.com" || p.Port != 22 {
		t.Fatalf("profile %+v from:\n%s", p, data)
	}
}

// Without a terminal and without --accept, an unknown host key is refused
// and its fingerprint kept for the message; with --accept it is taken.
func TestInitHostKeyAnswer(t *testing.T) {
	q := broker.Question{Kind: broker.HostKey, Server: "192.0.2.9:22", HostKey: "ED25519 SHA256:abc", Text: "?"}
	var out bytes.Buffer
	h := &hostKeyAnswer{stdout: &out}
	if _, err := h.Ask(context.Background(), q); err == nil || h.refused != "ED25519 SHA256:abc" || h.recorded {
		t.Fatalf("err %v refused %q recorded %v", err, h.refused, h.recorded)
	}
	h = &hostKeyAnswer{stdout: &out, accept: true}
	if ans, err := h.Ask(context.Background(), q); err != nil || ans != "yes" || !h.recorded {
		t.Fatalf("ans %q err %v recorded %v", ans, err, h.recorded)
	}
	if !strings.Contains(out.String(), "ED25519 SHA256:abc") {
		t.Fatalf("fingerprint not shown: %s", out.String())
	}
	// A passphrase with nobody to ask: an error, not an empty answer.
	if _, err := h.Ask(context.Background(), broker.Question{Kind: broker.Passphrase}); err == nil {
		t.Fatal("passphrase answered with nobody to ask")
	}
}

func starterOptions(host string) starter.Options {
	return starter.Options{Profile: "gateway", Host: host, Capture: []string{"10.0.0.0/8"}}
}
