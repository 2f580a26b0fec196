package tectia

// Tests of the conversion against ssh-broker-config(5)'s model. Every
// converted file is read back with shunt's own configuration package, as
// `shunt check` reads it.

import (
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

// validate parses data as shunt check does and fails the test if shunt
// would refuse it.
func validate(t testing.TB, name string, data []byte) *config.Config {
	t.Helper()
	if runtime.GOOS != "linux" && strings.Contains(string(data), "applications:") {
		t.Skip("shunt accepts applications in rules on Linux only")
	}
	cfg, err := config.Parse(name, data)
	if err != nil {
		t.Fatalf("shunt's configuration package rejects the converted YAML:\n%v\n--- YAML:\n%s", err, data)
	}
	return cfg
}

// xmlAttr writes s as a quoted XML attribute value.
func xmlAttr(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return `"` + strings.ReplaceAll(b.String(), `"`, "&quot;") + `"`
}

func linuxOnly(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("application rules convert on Linux only")
	}
}

func convertString(t *testing.T, xml string, opts Options) *Result {
	t.Helper()
	res, err := Convert(strings.NewReader(xml), "t.xml", opts)
	if err != nil {
		t.Fatalf("Convert: %v\n%s", err, xml)
	}
	return res
}

func problemTexts(res *Result) []string {
	var out []string
	for _, p := range res.Problems {
		out = append(out, p.String())
	}
	return out
}

// noteTexts reads the notes from the header of the YAML, where the user
// sees them.
func noteTexts(res *Result) []string {
	var out []string
	for _, l := range strings.Split(string(res.YAML), "\n") {
		if strings.HasPrefix(l, "#   ") && strings.Contains(l, ": note: ") {
			out = append(out, strings.TrimPrefix(l, "#   "))
		}
	}
	return out
}

func containsAll(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
			t.Errorf("no %s contains %q; got:\n%s", what, w, strings.Join(got, "\n"))
		}
	}
}

// fieldDiff names the fields in which two structs differ.
func fieldDiff(want, got any) string {
	w, g := reflect.ValueOf(want), reflect.ValueOf(got)
	var out []string
	for i := range w.NumField() {
		if !reflect.DeepEqual(w.Field(i).Interface(), g.Field(i).Interface()) {
			out = append(out, fmt.Sprintf("%s: got %v, want %v", w.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface()))
		}
	}
	return strings.Join(out, "; ")
}

// prof is what a test checks of a converted profile.
type prof struct {
	Name, Host, User, Jump, Proxy string
	Port                          int
	Auth, Ciphers                 []string
	Keepalive, Idle               string
	OnStart                       bool
}

func profOf(p config.Profile, defaultUser string) prof {
	d := func(v config.Duration) string {
		if !v.Set {
			return ""
		}
		return v.Raw
	}
	user := p.User
	if user == defaultUser {
		user = ""
	}
	return prof{
		Name: p.Name, Host: strings.Join(p.Host, ","), User: user, Jump: p.Jump, Proxy: p.Proxy,
		Port: p.Port, Auth: p.AuthMethods, Ciphers: p.Ciphers,
		Keepalive: d(p.KeepaliveInterval), Idle: d(p.IdleTimeout), OnStart: p.ConnectOnStart,
	}
}

// localUser is what config fills in for a profile without a user.
func localUser(t *testing.T) string {
	t.Helper()
	cfg := validate(t, "u.yaml", []byte("profiles:\n  - name: x\n    host: h\nrules: []\n"))
	return cfg.Profiles[0].User
}

func checkProfiles(t *testing.T, cfg *config.Config, want []prof) {
	t.Helper()
	u := localUser(t)
	if len(cfg.Profiles) != len(want) {
		t.Fatalf("%d profiles, want %d", len(cfg.Profiles), len(want))
	}
	for i, p := range cfg.Profiles {
		if got := profOf(p, u); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("profile %d %q: %s", i+1, p.Name, fieldDiff(want[i], got))
		}
	}
}

// rul is what a test checks of a converted rule.
type rul struct {
	Dests, Ports, Apps []string
	Action, Profile    string
	FromApp, Fallback  bool
}

func rulesOf(cfg *config.Config) []rul {
	var out []rul
	for _, r := range cfg.Rules {
		x := rul{Action: r.Action, Profile: r.Profile, FromApp: r.HostFromApplication, Fallback: r.FallbackDirect, Apps: r.Applications}
		for _, d := range r.Destinations {
			x.Dests = append(x.Dests, d.Raw)
		}
		for _, p := range r.Ports {
			x.Ports = append(x.Ports, p.Raw)
		}
		out = append(out, x)
	}
	return out
}

func checkRules(t *testing.T, cfg *config.Config, want []rul) {
	t.Helper()
	got := rulesOf(cfg)
	if len(got) != len(want) {
		t.Fatalf("%d rules, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("rule %d: %s", i+1, fieldDiff(want[i], got[i]))
		}
	}
}

// The samples written from the man page convert without --best-effort,
// and shunt accepts what they convert to.
func TestManPageSamples(t *testing.T) {
	for _, name := range []string{"manpage-profiles.xml", "manpage-default-settings.xml", "manpage-filter-engine.xml", "broker-config.xml"} {
		t.Run(name, func(t *testing.T) {
			if name != "manpage-default-settings.xml" {
				linuxOnly(t) // some have application rules
			}
			res := convertFile(t, filepath.Join("testdata", name), Options{})
			for _, p := range res.Problems {
				t.Errorf("problem: %s", p)
			}
			if res.Failed(Options{}) {
				t.Error("the conversion fails without --best-effort")
			}
			validate(t, name, res.YAML)
			golden(t, filepath.Join("testdata", strings.TrimSuffix(name, ".xml")+".golden"), res.YAML)
		})
	}
}

func TestManPageProfiles(t *testing.T) {
	res := convertFile(t, "testdata/manpage-profiles.xml", Options{})
	cfg := validate(t, "manpage-profiles.xml", res.YAML)
	checkProfiles(t, cfg, []prof{
		{Name: "gateway", Host: "gw.example.com", Port: 22, Auth: []string{"publickey", "keyboard-interactive"},
			Ciphers: []string{"aes128-ctr", "aes256-ctr"}, Keepalive: "30s", Idle: "300s", OnStart: true},
		{Name: "database", Host: "db.internal.example", Port: 2222, User: "alice", Jump: "gateway", Auth: []string{"password"}},
		{Name: "partner", Host: "ssh.partner.example", Port: 22, Proxy: "socks5://fw.example.com:1080"},
	})
	checkRules(t, cfg, []rul{
		{Dests: []string{"db.internal.example"}, Ports: []string{"5432"}, Action: "tunnel", Profile: "database"},
		{Dests: []string{"partner.example", "*.partner.example"}, Ports: []string{"443"}, Action: "tunnel", Profile: "partner"},
		{Action: "direct"},
	})
}

func TestManPageDefaultSettings(t *testing.T) {
	res := convertFile(t, "testdata/manpage-default-settings.xml", Options{})
	cfg := validate(t, "manpage-default-settings.xml", res.YAML)
	var proxies []string
	for _, r := range cfg.ProxyRules {
		proxies = append(proxies, fmt.Sprintf("%s %v", r.Proxy, r.Destinations))
	}
	want := []string{
		"direct [10.0.0.0/8 192.168.0.0/16 *.corp.example]",
		"socks5://fw.example.com:1080 [172.16.0.4/30 172.16.0.8/30 partner-?.example.net]",
		"http://proxy.example.com:8080 []",
	}
	if !slices.Equal(proxies, want) {
		t.Errorf("proxy rules:\n%s\nwant:\n%s", strings.Join(proxies, "\n"), strings.Join(want, "\n"))
	}
	all := []string{"publickey", "keyboard-interactive", "password"}
	checkProfiles(t, cfg, []prof{
		// default-settings, less what shunt does not implement.
		{Name: "office", Host: "gw.corp.example", Port: 22, Auth: all,
			Ciphers: []string{"aes128-gcm@openssh.com", "aes128-ctr", "aes256-ctr"}, Idle: "5s"},
		// The profile's own settings win; the rest is inherited.
		{Name: "lab", Host: "10.9.0.1", Port: 22, Auth: all,
			Ciphers: []string{"chacha20-poly1305@openssh.com"}, Keepalive: "20s", Idle: "600s"},
	})
	containsAll(t, "note", noteTexts(res),
		"manpage-default-settings.xml:21: note: default-settings: cipher twofish128-cbc is not implemented by shunt",
		"manpage-default-settings.xml:27: note: default-settings: authentication method gssapi-with-mic is not implemented by shunt",
		"manpage-default-settings.xml:38: note: default-settings: keepalive-interval 0 sends no keepalives; shunt always sends them",
		"manpage-default-settings.xml:56: note: logging: shunt writes its log to standard error",
	)
}

func TestManPageFilterEngine(t *testing.T) {
	linuxOnly(t)
	res := convertFile(t, "testdata/manpage-filter-engine.xml", Options{})
	cfg := validate(t, "manpage-filter-engine.xml", res.YAML)
	checkProfiles(t, cfg, []prof{
		{Name: "office-gateway", Host: "gw.example.com", Port: 22},
		{Name: "end-to-end", Port: 22},
	})
	checkRules(t, cfg, []rul{
		{Dests: []string{"mail.example.com"}, Ports: []string{"25", "587"}, Apps: []string{"outlook.exe"}, Action: "tunnel", Profile: "office-gateway"},
		{Dests: []string{"*.mail.example.com"}, Ports: []string{"143", "993"}, Apps: []string{"thunderbird"}, Action: "tunnel", Profile: "office-gateway"},
		// host wins over ip-address.
		{Dests: []string{"intranet.example.com", "*.intranet.example.com"}, Ports: []string{"80", "443"}, Apps: []string{"firefox", "chromium"},
			Action: "tunnel", Profile: "end-to-end", FromApp: true},
		{Dests: []string{"10.1.0.0/16"}, Ports: []string{"110"}, Action: "block"},
		{Dests: []string{"192.168.1.10"}, Ports: []string{"21-25"}, Action: "tunnel", Profile: "office-gateway", Fallback: true},
		// An empty host is no host: ip-address applies.
		{Dests: []string{"10.2.0.0/16"}, Action: "direct"},
		{Action: "direct"},
	})
	containsAll(t, "note", noteTexts(res),
		`manpage-filter-engine.xml:25: note: network "office": location awareness`,
		"manpage-filter-engine.xml:26: note: rule 1: application outlook.exe is a Windows program name (Windows only)",
		`manpage-filter-engine.xml:28: note: rule 2: application ".*thunderbird.*": Tectia matches every program whose name contains thunderbird; shunt matches program names exactly`,
		`manpage-filter-engine.xml:31: note: rule 3: has both host and ip-address; Tectia uses host (the documented precedence)`,
	)
}

// A rule's host-name pattern is its host attribute.
func TestRuleHost(t *testing.T) {
	res := convertString(t, `<secsh-broker><filter-engine>
<rule host="mail\.example\.com" ports="25" action="block" />
<rule host=".*\.corp\.example" action="direct" />
</filter-engine></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", problemTexts(res))
	}
	checkRules(t, validate(t, "t.xml", res.YAML), []rul{
		{Dests: []string{"mail.example.com"}, Ports: []string{"25"}, Action: "block"},
		{Dests: []string{"*.corp.example"}, Action: "direct"},
	})
	// host-name is not documented: say which attribute is.
	res = convertString(t, `<secsh-broker><filter-engine>
<rule host-name="mail\.example\.com" action="block" />
</filter-engine></secsh-broker>`, Options{})
	containsAll(t, "problem", problemTexts(res), "t.xml:2: rule 1: attribute host-name is not in ssh-broker-config(5): a rule's host-name pattern is its host attribute")
}

func TestHostWinsOverIPAddress(t *testing.T) {
	res := convertString(t, `<secsh-broker><filter-engine>
<rule host="mail\.example\.com" ip-address="10\.1\.2\.3" action="block" />
</filter-engine></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", problemTexts(res))
	}
	checkRules(t, validate(t, "t.xml", res.YAML), []rul{{Dests: []string{"mail.example.com"}, Action: "block"}})
	containsAll(t, "note", noteTexts(res), `t.xml:2: note: rule 1: has both host and ip-address; Tectia uses host (the documented precedence), and so does the conversion: ip-address "10\.1\.2\.3" is not used`)

	// Tectia does not look at the ip-address, so neither does the
	// conversion: one that would not convert alone is no problem.
	res = convertString(t, `<secsh-broker><filter-engine>
<rule host=".*\.corp\.example" ip-address="10\.(1|2)\..*" action="block" />
</filter-engine></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", problemTexts(res))
	}
	checkRules(t, validate(t, "t.xml", res.YAML), []rul{{Dests: []string{"*.corp.example"}, Action: "block"}})
}

func TestProfileProtocolAndHostType(t *testing.T) {
	res := convertString(t, `<secsh-broker><profiles>
<profile id="a" name="A" host="a.example" protocol="secsh2" host-type="unix" />
<profile id="b" name="B" host="b.example" protocol="SECSH2" host-type="windows" />
</profiles></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", problemTexts(res))
	}
	checkProfiles(t, validate(t, "t.xml", res.YAML), []prof{{Name: "a", Host: "a.example", Port: 22}, {Name: "b", Host: "b.example", Port: 22}})
	res = convertString(t, `<secsh-broker><profiles><profile id="a" host="a.example" protocol="secsh1" /></profiles></secsh-broker>`, Options{})
	containsAll(t, "problem", problemTexts(res), `profile protocol "secsh1": shunt speaks SSH 2 (secsh2) only`)
}

func TestEmptySections(t *testing.T) {
	res := convertString(t, `<secsh-broker version="6.4">
<general/>
<default-settings/>
<profiles><profile id="a" host="a.example"/></profiles>
<static-tunnels/>
<gui/>
<filter-engine/>
<logging/>
</secsh-broker>`, Options{})
	if len(res.Problems) > 0 || len(noteTexts(res)) > 0 {
		t.Errorf("problems %v, notes %v", problemTexts(res), noteTexts(res))
	}
	validate(t, "t.xml", res.YAML)
}

func TestLoggingNote(t *testing.T) {
	res := convertString(t, `<secsh-broker>
<logging>
  <log-events facility="daemon" severity="info">connect</log-events>
</logging>
</secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Errorf("problems: %v", problemTexts(res))
	}
	containsAll(t, "note", noteTexts(res), "t.xml:2: note: logging: shunt writes its log to standard error (the journal, when systemd runs it), at the level of log.level")
}

func TestApplications(t *testing.T) {
	linuxOnly(t)
	for _, tc := range []struct {
		in      string
		apps    []string
		note    string
		problem string
	}{
		{in: "thunderbird", apps: []string{"thunderbird"}},
		{in: "^mutt$", apps: []string{"mutt"}},
		{in: ".*", apps: nil},
		{in: `.*evolution.*`, apps: []string{"evolution"}, note: `application ".*evolution.*": Tectia matches every program whose name contains evolution`},
		{in: "thunderbird|evolution|mutt", apps: []string{"thunderbird", "evolution", "mutt"}},
		{in: "(firefox|chromium)", apps: []string{"firefox", "chromium"}},
		{in: `.*firefox.*|chromium`, apps: []string{"firefox", "chromium"}, note: "contains firefox"},
		{in: `outlook\.exe`, apps: []string{"outlook.exe"}, note: "application outlook.exe is a Windows program name (Windows only)"},
		{in: "OUTLOOK.EXE|thunderbird", apps: []string{"OUTLOOK.EXE", "thunderbird"}, note: "OUTLOOK.EXE is a Windows program name"},
		{in: "my mail client", apps: []string{"my mail client"}},
		{in: "firefox.exe, chrome.exe", problem: "a comma is an ordinary character in a regular expression"},
		{in: "mutt[0-9]", problem: "is a regular expression with no exact shunt equivalent"},
		{in: "g++", problem: "no exact shunt equivalent"},
		{in: `C:\\Apps\\.*\.exe`, problem: "no exact shunt equivalent"},
		{in: "thunder.*", problem: "no exact shunt equivalent"},
		{in: "a||b", problem: "no exact shunt equivalent"},
		{in: "mutt |x", problem: "no exact shunt equivalent"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			res := convertString(t, `<secsh-broker><filter-engine><rule application=`+xmlAttr(tc.in)+` action="block" /></filter-engine></secsh-broker>`, Options{BestEffort: true})
			cfg := validate(t, "t.xml", res.YAML)
			if tc.problem != "" {
				containsAll(t, "problem", problemTexts(res), tc.problem)
				if len(cfg.Rules) != 0 {
					t.Errorf("the rule converted: %+v", rulesOf(cfg))
				}
				return
			}
			if len(res.Problems) > 0 {
				t.Fatalf("problems: %v", problemTexts(res))
			}
			if len(cfg.Rules) != 1 || !slices.Equal(cfg.Rules[0].Applications, tc.apps) {
				t.Errorf("applications %+v, want %v", rulesOf(cfg), tc.apps)
			}
			if tc.note != "" {
				containsAll(t, "note", noteTexts(res), tc.note)
			} else if n := noteTexts(res); len(n) > 0 {
				t.Errorf("unexpected notes: %v", n)
			}
		})
	}
}

// shunt looks applications up on Linux only, and refuses rules with
// applications elsewhere: so does the conversion there.
func TestApplicationsOffLinux(t *testing.T) {
	res, err := convertFor(strings.NewReader(`<secsh-broker><filter-engine>
<rule application="thunderbird" action="block" />
<rule ip-address="10\.1\..*" action="block" />
</filter-engine></secsh-broker>`), "t.xml", "darwin")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := problemTexts(res), []string{"t.xml:2: rule 1: applications cannot be looked up on darwin yet, only on Linux: remove application from the rule, or convert on Linux (not converted)"}; !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
	if strings.Contains(string(res.YAML), "applications:") {
		t.Errorf("applications written:\n%s", res.YAML)
	}
}

// Location awareness: a network, and the rules tied to it, are listed; the
// other rules convert.
func TestNetwork(t *testing.T) {
	res := convertString(t, `<secsh-broker><filter-engine>
<network id="office">
  <rule ip-address="10\.7\..*" action="block" />
</network>
<network id="unused" />
<rule ip-address="10\.8\..*" action="block" network-id="office" />
<rule ip-address="10\.9\..*" action="block" />
</filter-engine></secsh-broker>`, Options{BestEffort: true})
	if got, want := problemTexts(res), []string{
		`t.xml:3: rule 1: applies only in network "office" (line 2), and shunt has no location awareness: it would apply the rule in every network (not converted)`,
		`t.xml:6: rule 2: applies only in network "office" (line 2), and shunt has no location awareness: it would apply the rule in every network (not converted)`,
	}; !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	containsAll(t, "note", noteTexts(res), `t.xml:2: note: network "office": location awareness`, `t.xml:5: note: network "unused": location awareness`)
	checkRules(t, validate(t, "t.xml", res.YAML), []rul{{Dests: []string{"10.9.0.0/16"}, Action: "block"}})
}

func TestProxyRuleset(t *testing.T) {
	for _, tc := range []struct {
		ruleset string
		want    []string // "proxy [destinations]"
		problem string
	}{
		{ruleset: "", want: nil},
		{ruleset: "direct", want: []string{"direct []"}},
		{ruleset: "socks4(socks://fw.example:1080)", want: []string{"socks4://fw.example:1080 []"}},
		{ruleset: "socks5(fw.example:1080) 10.1.0.0/16", want: []string{"socks5://fw.example:1080 [10.1.0.0/16]"}},
		{ruleset: "HTTP(http://proxy.example:3128) *.example.com, 10.0.0.1; direct", want: []string{"http://proxy.example:3128 [*.example.com 10.0.0.1]", "direct []"}},
		{ruleset: "direct 10.0.0.1-10.0.0.3;", want: []string{"direct [10.0.0.1 10.0.0.2/31]"}},
		{ruleset: "direct 10.1.2.3/16", want: []string{"direct [10.1.0.0/16]"}},
		{ruleset: "socks5(socks://alice:s3cret@fw.example:1080)", want: []string{"socks5://alice:s3cret@fw.example:1080 []"}},
		{ruleset: "direct 10.0.0.0/8:22", problem: "has a port range (:22)"},
		{ruleset: "socks5(socks://fw.example:1080) mail.example.com:25-110", problem: "has a port range"},
		{ruleset: "socks5", problem: "socks5 needs its server"},
		{ruleset: "socks5(fw.example)", problem: "write its host and port"},
		{ruleset: "direct(fw.example:1080)", problem: "direct takes no server"},
		{ruleset: "socks(fw.example:1080)", problem: `type "socks" is not direct, socks4, socks5 or http`},
		{ruleset: "http(socks://fw.example:1080)", problem: "the scheme is socks, not http"},
		{ruleset: "socks5(socks://alice:s3cret@fw.example:1080/x)", problem: "has a path or query"},
		{ruleset: "socks5(socks://fw.example:1080", problem: "is not closed"},
		{ruleset: "direct 10.0.0.9-10.0.0.1", problem: "is not an address range"},
		{ruleset: "direct [bad]", problem: "is not an address"},
	} {
		t.Run(tc.ruleset, func(t *testing.T) {
			res := convertString(t, `<secsh-broker><default-settings><proxy ruleset=`+xmlAttr(tc.ruleset)+` /></default-settings></secsh-broker>`, Options{BestEffort: true})
			cfg := validate(t, "t.xml", res.YAML)
			var got []string
			for _, r := range cfg.ProxyRules {
				got = append(got, fmt.Sprintf("%s %v", r.Proxy, r.Destinations))
			}
			if tc.problem != "" {
				containsAll(t, "problem", problemTexts(res), tc.problem)
				for _, p := range problemTexts(res) {
					if strings.Contains(p, "s3cret") {
						t.Errorf("a problem shows the password: %s", p)
					}
				}
				if len(got) > 0 {
					t.Errorf("proxy rules converted: %v", got)
				}
				return
			}
			if len(res.Problems) > 0 {
				t.Fatalf("problems: %v", problemTexts(res))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("proxy rules %v, want %v", got, tc.want)
			}
		})
	}
}

func TestProfileProxy(t *testing.T) {
	doc := func(def, prof string) string {
		return fmt.Sprintf(`<secsh-broker><default-settings>%s</default-settings><profiles>
<profile id="gw" host="gw.example" />
<profile id="p" host="p.example" %s</profiles></secsh-broker>`, def, prof)
	}
	for _, tc := range []struct {
		name, def, prof string
		proxy, problem  string
	}{
		{name: "one proxy", prof: `><proxy ruleset="http(http://proxy.example:8080)" /></profile>`, proxy: "http://proxy.example:8080"},
		{name: "direct, no default rules", prof: `><proxy ruleset="direct" /></profile>`},
		{name: "direct, default direct", def: `<proxy ruleset="direct" />`, prof: `><proxy ruleset="direct" /></profile>`},
		{name: "direct under default proxies", def: `<proxy ruleset="socks5(fw.example:1080)" />`, prof: `><proxy ruleset="direct" /></profile>`,
			problem: `profile "p" connects directly, but default-settings' proxy rules apply`},
		{name: "several rules", prof: `><proxy ruleset="direct 10.0.0.0/8; socks5(fw.example:1080)" /></profile>`, problem: "a proxy ruleset of several rules"},
		{name: "some servers", prof: `><proxy ruleset="socks5(fw.example:1080) 10.0.0.0/8" /></profile>`, problem: "a proxy ruleset of several rules, or of rules for some servers only"},
		{name: "and a gateway", prof: `gateway-profile="gw"><proxy ruleset="socks5(fw.example:1080)" /></profile>`,
			problem: `profile "p" has its own proxy and a gateway-profile`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := convertString(t, doc(tc.def, tc.prof), Options{BestEffort: true})
			cfg := validate(t, "t.xml", res.YAML)
			if tc.problem != "" {
				containsAll(t, "problem", problemTexts(res), tc.problem)
			} else if len(res.Problems) > 0 {
				t.Fatalf("problems: %v", problemTexts(res))
			}
			if got := cfg.Profiles[1].Proxy; got != tc.proxy {
				t.Errorf("proxy %q, want %q", got, tc.proxy)
			}
		})
	}
}

func TestIdleTimeoutAndKeepalive(t *testing.T) {
	for _, tc := range []struct {
		xml             string
		idle, keepalive string
		note, problem   string
	}{
		{xml: `<idle-timeout type="connection" time="5" />`, idle: "5s"},
		{xml: `<idle-timeout time="3600" />`, idle: "3600s"},
		{xml: `<idle-timeout type="connection" time="0" />`, problem: "idle-timeout 0 closes the connection as soon as its last channel closes"},
		{xml: `<idle-timeout type="tunnel" time="5" />`, problem: `idle-timeout of type "tunnel" has no shunt equivalent`},
		{xml: `<idle-timeout type="connection" time="five" />`, problem: `time "five" is not a number of seconds`},
		{xml: `<idle-timeout type="connection" />`, problem: "<idle-timeout> has no time"},
		{xml: `<keepalive-interval time="15" />`, keepalive: "15s"},
		{xml: `<keepalive-interval time="0" />`, note: "keepalive-interval 0 sends no keepalives; shunt always sends them"},
		{xml: `<keepalive-interval time="-1" />`, problem: "is not a number of seconds"},
		{xml: `<keepalive-interval count="3" time="5" />`, keepalive: "5s", problem: "attribute count of <keepalive-interval> is not understood"},
	} {
		t.Run(tc.xml, func(t *testing.T) {
			// default-settings' values apply only where the profile sets none.
			res := convertString(t, `<secsh-broker><default-settings><idle-timeout time="7"/><keepalive-interval time="9"/></default-settings>
<profiles><profile id="p" host="p.example">`+tc.xml+`</profile><profile id="q" host="q.example" /></profiles></secsh-broker>`, Options{BestEffort: true})
			cfg := validate(t, "t.xml", res.YAML)
			if tc.problem != "" {
				containsAll(t, "problem", problemTexts(res), tc.problem)
			} else if len(res.Problems) > 0 {
				t.Fatalf("problems: %v", problemTexts(res))
			}
			if tc.note != "" {
				containsAll(t, "note", noteTexts(res), tc.note)
			}
			want := prof{Idle: tc.idle, Keepalive: tc.keepalive}
			// Whichever the profile sets (converted or not) is its own;
			// the other comes from default-settings.
			if strings.Contains(tc.xml, "idle-timeout") {
				want.Keepalive = "9s"
			} else {
				want.Idle = "7s"
			}
			got := profOf(cfg.Profiles[0], "")
			if got.Idle != want.Idle || got.Keepalive != want.Keepalive {
				t.Errorf("idle_timeout %q keepalive_interval %q, want %q %q", got.Idle, got.Keepalive, want.Idle, want.Keepalive)
			}
			if got := profOf(cfg.Profiles[1], ""); got.Idle != "7s" || got.Keepalive != "9s" {
				t.Errorf("profile without its own: idle_timeout %q keepalive_interval %q, want 7s 9s", got.Idle, got.Keepalive)
			}
		})
	}
}

func TestCiphersAndAuthMethods(t *testing.T) {
	for _, tc := range []struct {
		name, def, prof string
		ciphers, auth   []string
		note, problem   string
	}{
		{name: "ciphers", prof: `<ciphers><cipher name="aes256-ctr"/><cipher name="aes128-gcm@openssh.com"/></ciphers>`,
			ciphers: []string{"aes256-ctr", "aes128-gcm@openssh.com"}},
		{name: "inherited", def: `<ciphers><cipher name="aes256-ctr"/></ciphers><authentication-methods><authentication-method name="password"/></authentication-methods>`,
			ciphers: []string{"aes256-ctr"}, auth: []string{"password"}},
		{name: "own wins", def: `<ciphers><cipher name="aes256-ctr"/></ciphers>`, prof: `<ciphers><cipher name="aes128-ctr"/></ciphers>`,
			ciphers: []string{"aes128-ctr"}},
		{name: "unimplemented cipher", prof: `<ciphers><cipher name="seed-cbc@ssh.com"/><cipher name="aes128-ctr"/></ciphers>`,
			ciphers: []string{"aes128-ctr"}, note: "cipher seed-cbc@ssh.com is not implemented by shunt, so left out of the list"},
		{name: "insecure cipher", prof: `<ciphers><cipher name="3des-cbc"/></ciphers>`,
			ciphers: []string{"3des-cbc"}, note: "cipher 3des-cbc is converted, but it has known weaknesses"},
		{name: "no cipher left", def: `<ciphers><cipher name="aes256-ctr"/></ciphers>`, prof: `<ciphers><cipher name="twofish-cbc"/></ciphers>`,
			problem: "none of the ciphers twofish-cbc is one shunt implements"},
		{name: "auth order", prof: `<authentication-methods><authentication-method name="keyboard-interactive"/><authentication-method name="publickey"/></authentication-methods>`,
			auth: []string{"keyboard-interactive", "publickey"}},
		{name: "auth elements", prof: `<authentication-methods><auth-password/><auth-publickey/></authentication-methods>`,
			auth: []string{"password", "publickey"}},
		{name: "gssapi dropped", prof: `<authentication-methods><authentication-method name="gssapi-with-mic"/><authentication-method name="hostbased"/><authentication-method name="password"/></authentication-methods>`,
			auth: []string{"password"}, note: "authentication methods gssapi-with-mic, hostbased are not implemented by shunt"},
		{name: "no method left", prof: `<authentication-methods><authentication-method name="gssapi-with-mic"/></authentication-methods>`,
			problem: "shunt has none of the authentication methods gssapi-with-mic"},
		{name: "unknown method", prof: `<authentication-methods><authentication-method name="telepathy"/></authentication-methods>`,
			problem: `authentication method "telepathy" is not one of Tectia's`},
		{name: "macs", prof: `<macs><mac name="hmac-sha1"/></macs>`, problem: "<macs>: shunt has no setting for these algorithms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := convertString(t, `<secsh-broker><default-settings>`+tc.def+`</default-settings><profiles><profile id="p" host="p.example">`+tc.prof+`</profile></profiles></secsh-broker>`, Options{BestEffort: true})
			cfg := validate(t, "t.xml", res.YAML)
			if tc.problem != "" {
				containsAll(t, "problem", problemTexts(res), tc.problem)
			} else if len(res.Problems) > 0 {
				t.Fatalf("problems: %v", problemTexts(res))
			}
			if tc.note != "" {
				containsAll(t, "note", noteTexts(res), tc.note)
			}
			got := profOf(cfg.Profiles[0], "")
			if !slices.Equal(got.Ciphers, tc.ciphers) || !slices.Equal(got.Auth, tc.auth) {
				t.Errorf("ciphers %v auth_methods %v, want %v %v", got.Ciphers, got.Auth, tc.ciphers, tc.auth)
			}
		})
	}
}

// --best-effort never writes what shunt check refuses: every sample, good
// or bad, converts to a configuration shunt accepts.
func TestBestEffortOutputIsValid(t *testing.T) {
	files, err := filepath.Glob("testdata/*.xml")
	if err != nil || len(files) < 5 {
		t.Fatalf("samples: %v %v", files, err)
	}
	for _, f := range files {
		if filepath.Base(f) == "malformed.xml" {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			res := convertFile(t, f, Options{BestEffort: true})
			validate(t, filepath.Base(f), res.YAML)
		})
	}
}

// A profile without a host is only valid for rules that connect to the
// application's destination: when those rules do not convert, or there
// are none, the profile is left out and the output says so.
func TestHostlessProfileLeftOut(t *testing.T) {
	res := convertFile(t, "testdata/hostless-dropped.xml", Options{BestEffort: true})
	cfg := validate(t, "hostless-dropped.xml", res.YAML)
	checkProfiles(t, cfg, []prof{{Name: "gateway", Host: "gw.example.com", Port: 22}})
	containsAll(t, "note", noteTexts(res),
		`hostless-dropped.xml:9: note: profile "end-to-end" has no host and no converted rule connects through it`,
		`hostless-dropped.xml:11: note: profile "spare" has no host and no converted rule connects through it`)
	if !strings.Contains(string(res.YAML), "# hostless-dropped.xml:9: profile end-to-end was here, left out") {
		t.Errorf("no comment where the profile was:\n%s", res.YAML)
	}

	// Without problems too: an unused profile without a host.
	res = convertString(t, `<secsh-broker><profiles><profile id="e2e" host="" /></profiles></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", problemTexts(res))
	}
	if cfg := validate(t, "t.xml", res.YAML); len(cfg.Profiles) != 0 {
		t.Errorf("profiles %+v", cfg.Profiles)
	}
}

// host converts only to names shunt can resolve.
func TestHostNamesShuntAccepts(t *testing.T) {
	for _, h := range []string{`mail_1\.example\.com`, `(.*\.)?under_score\.example`, `.*\.-bad\.example`, `10\.1\.2`} {
		t.Run(h, func(t *testing.T) {
			res := convertString(t, `<secsh-broker><filter-engine><rule host=`+xmlAttr(h)+` action="block" /></filter-engine></secsh-broker>`, Options{BestEffort: true})
			containsAll(t, "problem", problemTexts(res), "is not a host name shunt can resolve")
			if cfg := validate(t, "t.xml", res.YAML); len(cfg.Rules) != 0 {
				t.Errorf("converted: %+v", rulesOf(cfg))
			}
		})
	}
}

// FuzzConvert: no input crashes the converter, and whatever it converts,
// with --best-effort, shunt accepts.
func FuzzConvert(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.xml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`<secsh-broker><default-settings><proxy ruleset="direct 1.2.3.4-1.2.3.9"/></default-settings></secsh-broker>`))
	f.Add([]byte(`<secsh-broker><filter-engine><rule application="(a|b)" host="(.*\.)?x" action="block"/></filter-engine></secsh-broker>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return // bounded: a real file is a few kilobytes
		}
		res, err := Convert(strings.NewReader(string(data)), "f.xml", Options{BestEffort: true})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.xml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if runtime.GOOS == "linux" {
			if _, err := config.Parse("f.yaml", res.YAML); err != nil {
				t.Fatalf("shunt rejects the converted YAML: %v\n--- input:\n%s\n--- YAML:\n%s", err, data, res.YAML)
			}
		}
	})
}
