package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGatewayCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(bad, []byte("listen: [\":2222\"]\nlistn: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	none := filepath.Join(dir, "absent.yaml")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--bogus"}, 2, "usage: shunt gateway"},
		{[]string{"extra"}, 2, "usage: shunt gateway"},
		{[]string{"--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--permit", "10.0.0.0/8:0"}, 2, "--permit"},
		{[]string{"--config", bad}, 1, bad + ":2: unknown key \"listn\": did you mean listen?"},
		{[]string{"--host-key", filepath.Join(dir, "h")}, 1, "--authorized-keys"},
	} {
		var stdout, stderr bytes.Buffer
		code := runGateway(context.Background(), tt.args, &stdout, &stderr, none)
		if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("shunt gateway %q = %d, %q; want %d, %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runGateway(context.Background(), []string{"-h"}, &stdout, &stderr, none); code != 0 || !strings.Contains(stdout.String(), "-permit") {
		t.Errorf("-h = %d, %q", code, stdout.String())
	}
}

// TestGatewayCommandRuns: flags and the default file combine, and the
// gateway stops when its context ends.
func TestGatewayCommandRuns(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keys, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(def, []byte("authorized_keys: authorized_keys\npermit: [127.0.0.1]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := runGateway(ctx, []string{"--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host")}, &stdout, &stderr, def)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "host.pub")); err != nil {
		t.Errorf("host key not made: %v", err)
	}
	if !strings.Contains(stderr.String(), "nobody can log in") {
		t.Errorf("no warning about the empty authorized_keys: %s", stderr.String())
	}
}
