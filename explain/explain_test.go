package explain

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

const testConfig = `profiles:
  - name: office
    host: gw.corp.example
    user: alice
rules:
  - name: mail
    destinations: [mail.corp.example, 10.1.0.0/24]
    ports: [993]
    action: tunnel
    profile: office
dns:
  enabled: false
`

func load(t *testing.T) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	if err := os.WriteFile(path, []byte(testConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := FromLoaded(l)
	if err != nil {
		t.Fatal(err)
	}
	c.Lookup = func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "mail.corp.example" {
			return []netip.Addr{netip.MustParseAddr("10.9.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return c
}

func TestNew(t *testing.T) {
	c := load(t)
	for _, tt := range []struct {
		req    Request
		action string
		index  int
	}{
		{Request{Destination: "mail.corp.example:993"}, "tunnel", 1},
		{Request{Destination: "10.1.0.7:993", User: "0", Application: "/usr/bin/curl"}, "tunnel", 1},
		{Request{Destination: "10.1.0.7:25"}, "direct", 0},
		{Request{Destination: "nosuch.example:80"}, "none", 0},
	} {
		e, err := New(c, tt.req)
		if err != nil {
			t.Fatalf("%+v: %v", tt.req, err)
		}
		if e.Decision.Action != tt.action || e.Decision.Index != tt.index {
			t.Errorf("%+v: decision %+v, want %s by rule %d", tt.req, e.Decision, tt.action, tt.index)
		}
	}
	if _, err := New(c, Request{Destination: "10.1.0.7:99999"}); err == nil {
		t.Error("a bad port is not an error")
	}
	if _, err := New(c, Request{Destination: "10.1.0.7:993", From: "lan-host"}); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Errorf("a source that is a name: %v", err)
	}
}

// The JSON names are a contract: shunt explain --json and POST
// /v1/explain print them.
func TestJSONNames(t *testing.T) {
	e, err := New(load(t), Request{Destination: "mail.corp.example:993", User: "0"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{`"layers":`, `"flow":{`, `"destination":"mail.corp.example:993"`, `"names":["mail.corp.example"]`, `"uid":0`,
		`"capture":{"captured":true`, `"steps":[`, `"decision":{"index":1,"rule":"#1 \"mail\"","action":"tunnel"`, `"profile":"office"`, `"route":"direct to alice@gw.corp.example:22"`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("JSON lacks %s:\n%s", k, b)
		}
	}
}
