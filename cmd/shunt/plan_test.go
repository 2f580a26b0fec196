package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/engine"
)

// The start-up plan names every rule's destinations, host names (with
// their addresses, or that they have none yet), domains, applications and
// users. A rule whose only destination does not resolve must not look
// like one for any destination.
func TestLogPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shunt.yaml")
	os.WriteFile(path, []byte(`profiles:
  - name: office
    host: gw.corp.example
    user: alice
proxy_rules:
  - destinations: ["*.corp.example"]
    proxy: http://proxy.corp.example:3128
rules:
  - name: gone
    destinations: [nosuch.invalid]
    action: tunnel
    profile: office
  - name: mail
    destinations: [mail.corp.example, 10.1.0.0/24, "*.corp.example"]
    ports: [993]
    applications: [thunderbird]
    users: [root, 1234]
    action: tunnel
    profile: office
  - name: everything-else
    action: block
`), 0o600)
	cfg, err := config.LoadLayers(config.Layers{Extra: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	resolved := func(h string) []netip.Addr {
		if h == "mail.corp.example" {
			return []netip.Addr{netip.MustParseAddr("10.1.2.3")}
		}
		return nil
	}
	plan, err := engine.Convert(cfg.Config)
	if err != nil {
		t.Fatal(err)
	}
	log, hook := test.NewNullLogger()
	logPlan(log, plan, plan.Captured(resolved), resolved)

	var lines []string
	for _, e := range hook.AllEntries() {
		s, _ := (&logrus.TextFormatter{DisableTimestamp: true}).Format(e)
		lines = append(lines, strings.TrimSpace(string(s)))
	}
	want := []string{
		`level=info msg="capturing 10.1.0.0/24, 10.1.2.3/32, 0.0.0.0/0, ::/0 via shunt0"`,
		`level=info msg=rule action=tunnel hosts="nosuch.invalid (does not resolve yet: matches nothing until it does)" rule="#1 \"gone\"" source="` + path + `:9" via="office: via http://proxy.corp.example:3128 (proxy rule 1) to alice@gw.corp.example:22"`,
		`level=info msg=rule action=tunnel applications=thunderbird destinations=10.1.0.0/24 domains="*.corp.example" hosts="mail.corp.example (10.1.2.3)" ports=993 rule="#2 \"mail\"" source="` + path + `:13" users="root (uid 0), 1234" via="office: via http://proxy.corp.example:3128 (proxy rule 1) to alice@gw.corp.example:22"`,
		`level=info msg=rule action=block destinations=any rule="#3 \"everything-else\"" source="` + path + `:20"`,
		`level=info msg="everything else is left alone; captured flows that no rule matches go direct"`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

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
