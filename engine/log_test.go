package engine_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// The start-up plan names every rule's destinations, host names (with
// their addresses, or that they have none yet), domains, applications and
// users. A rule whose only destination does not resolve must not look
// like one for any destination.
func TestPlanLog(t *testing.T) {
	plan := mustConvert(t, `profiles:
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
`)
	resolved := func(h string) []netip.Addr {
		if h == "mail.corp.example" {
			return []netip.Addr{netip.MustParseAddr("10.1.2.3")}
		}
		return nil
	}
	log, hook := test.NewNullLogger()
	plan.Log(log, resolved)

	var lines []string
	for _, e := range hook.AllEntries() {
		s, _ := (&logrus.TextFormatter{DisableTimestamp: true}).Format(e)
		lines = append(lines, strings.TrimSpace(string(s)))
	}
	want := []string{
		`level=info msg="capturing 10.1.0.0/24, 10.1.2.3/32, 0.0.0.0/0, ::/0 via shunt0"`,
		`level=info msg=rule action=tunnel hosts="nosuch.invalid (does not resolve yet: matches nothing until it does)" rule="#1 \"gone\"" source="shunt.yaml:9" via="office: via http://proxy.corp.example:3128 (proxy rule 1) to alice@gw.corp.example:22"`,
		`level=info msg=rule action=tunnel applications=thunderbird destinations=10.1.0.0/24 domains="*.corp.example" hosts="mail.corp.example (10.1.2.3)" ports=993 rule="#2 \"mail\"" source="shunt.yaml:13" users="root (uid 0), 1234" via="office: via http://proxy.corp.example:3128 (proxy rule 1) to alice@gw.corp.example:22"`,
		`level=info msg=rule action=block destinations=any rule="#3 \"everything-else\"" source="shunt.yaml:20"`,
		`level=info msg="everything else is left alone; captured flows that no rule matches go direct"`,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
