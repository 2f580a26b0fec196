package main

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

// hostAddrs is a router.Locals of fixed addresses.
type hostAddrs []string

func (h hostAddrs) IsLocal(a netip.Addr) bool {
	for _, s := range h {
		if netip.MustParseAddr(s) == a {
			return true
		}
	}
	return false
}

const explainSourcesConfig = `profiles:
  - name: office
    host: gw.corp.example
    user: alice
rules:
  - name: lan
    sources: [192.168.50.0/24]
    destinations: [10.1.0.0/16]
    action: tunnel
    profile: office
  - name: office
    destinations: [10.1.0.0/16]
    action: tunnel
    profile: office
`

// explain --from decides the flow from that source: another host's is a
// forwarded flow, which only rules with sources: match, and the
// explanation says which rule was skipped and why.
func TestExplainFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(explainSourcesConfig), 0o600)
	cfg, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	locals := hostAddrs{"192.168.1.2"}
	for _, tt := range []struct {
		from, dest string
		action     string
		want       []string
	}{
		{"192.168.50.7", "10.1.2.3:22", "tunnel", []string{
			"flow from 192.168.50.7 (another host's address: a flow it routes through this one, which only rules with sources: covering it match) to 10.1.2.3:22",
			`MATCH  rule #1 "lan"`, "source 192.168.50.7 in 192.168.50.0/24, destination 10.1.2.3 in 10.1.0.0/16",
		}},
		{"192.168.77.7", "10.1.2.3:22", "block", []string{
			"source 192.168.77.7 not in [192.168.50.0/24]",
			"flow forwarded from 192.168.77.7 (another host): only rules with sources: covering it match it",
			"refused: forwarded flow from 192.168.77.7 (another host), and no rule with sources: covering it matches: refused; add sources: [192.168.77.7] to a rule to let it through",
		}},
		{"192.168.1.2", "10.1.2.3:22", "tunnel", []string{
			"flow from 192.168.1.2 (this host's address) to 10.1.2.3:22",
			"source 192.168.1.2 not in [192.168.50.0/24]", `MATCH  rule #2 "office"`,
		}},
		{"[::ffff:127.0.0.1]", "10.1.2.3:22", "tunnel", []string{"flow from 127.0.0.1 (this host's address)", `MATCH  rule #2 "office"`}},
		{"", "10.1.2.3:22", "tunnel", []string{"source unknown: the rule is only for sources [192.168.50.0/24] (explain --from ADDR gives one)", `MATCH  rule #2 "office"`}},
	} {
		e, err := newExplanation(cfg, tt.dest, "", "", tt.from, locals, fakeLookup(nil))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		printExplanation(&out, e)
		if e.Decision.Action != tt.action {
			t.Errorf("--from %q: action %s, want %s:\n%s", tt.from, e.Decision.Action, tt.action, out.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("--from %q: output\n%s\nwant it to contain\n%s", tt.from, out.String(), w)
			}
		}
	}
	if _, err := newExplanation(cfg, "10.1.2.3:22", "", "", "lan-host", locals, fakeLookup(nil)); err == nil || !strings.Contains(err.Error(), `the source "lan-host" is not an IP address`) {
		t.Errorf("--from a name: %v", err)
	}
}
