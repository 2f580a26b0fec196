package tectia

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/shunt-dev/shunt/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func convertFile(t *testing.T, path string, opts Options) *Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Convert(f, filepath.Base(path), opts)
	if err != nil {
		t.Fatalf("Convert(%s): %v", path, err)
	}
	return res
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./tectia/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// parseYAML decodes shunt's YAML generically, as a check that it parses.
func parseYAML(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatalf("the YAML does not parse: %v\n%s", err, data)
	}
	return m
}

func TestConvertSample(t *testing.T) {
	res := convertFile(t, "testdata/broker-config.xml", Options{})
	for _, p := range res.Problems {
		t.Errorf("unexpected problem: %s", p)
	}
	if res.Failed(Options{}) {
		t.Error("Failed() with no problems")
	}
	golden(t, "testdata/broker-config.golden", res.YAML)

	m := parseYAML(t, res.YAML)
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, []string{"profiles", "rules"}) {
		t.Errorf("top-level keys %v, want [profiles rules]", got)
	}
	profiles := m["profiles"].([]any)
	if len(profiles) != 4 {
		t.Fatalf("%d profiles, want 4", len(profiles))
	}
	allowedProfile := []string{"name", "host", "port", "user", "jump", "connect_on_start"}
	for _, p := range profiles {
		for k := range p.(map[string]any) {
			if !slices.Contains(allowedProfile, k) {
				t.Errorf("profile key %q is not one of %v", k, allowedProfile)
			}
		}
	}
	// The gateway-profile chain: Lab → Office → DMZ Gateway.
	jumps := map[string]any{}
	for _, p := range profiles {
		pm := p.(map[string]any)
		jumps[pm["name"].(string)] = pm["jump"]
	}
	wantJumps := map[string]any{"dmz-gateway": nil, "office": "dmz-gateway", "lab": "office", "end-to-end": nil}
	for name, j := range wantJumps {
		if got, ok := jumps[name]; !ok || got != j {
			t.Errorf("profile %q jump = %v (present %v), want %v", name, got, ok, j)
		}
	}

	rules := m["rules"].([]any)
	if len(rules) != 12 {
		t.Fatalf("%d rules, want 12", len(rules))
	}
	allowedRule := []string{"name", "destinations", "ports", "action", "profile", "host_from_application", "fallback_direct", "applications"}
	seen := map[string]bool{}
	for _, r := range rules {
		for k := range r.(map[string]any) {
			if !slices.Contains(allowedRule, k) {
				t.Errorf("rule key %q is not one of %v", k, allowedRule)
			}
			seen[k] = true
		}
	}
	for _, k := range allowedRule {
		if !seen[k] {
			t.Errorf("no rule of the sample has %q", k)
		}
	}
	wantDests := [][]string{
		{"10.1.0.25"}, {"10.1.0.0/16"}, {"192.168.1.0/24"}, {"172.16.5.7"}, {"10.20.30.40"},
		{"mail.corp.example"}, {"*.lab.example"}, {"intranet.example", "*.intranet.example"},
		{"10.0.0.0/8"}, {"10.2.3.0/24"}, {"fd00::25"}, nil,
	}
	wantActions := []string{"tunnel", "tunnel", "block", "direct", "tunnel", "tunnel", "tunnel", "tunnel", "direct", "block", "tunnel", "direct"}
	for i, r := range rules {
		rm := r.(map[string]any)
		var dests []string
		if d, ok := rm["destinations"]; ok {
			for _, x := range d.([]any) {
				dests = append(dests, x.(string))
			}
		}
		if !slices.Equal(dests, wantDests[i]) {
			t.Errorf("rule %d destinations %v, want %v", i+1, dests, wantDests[i])
		}
		if rm["action"] != wantActions[i] {
			t.Errorf("rule %d action %v, want %s", i+1, rm["action"], wantActions[i])
		}
		if rm["name"] != fmt.Sprintf("rule-%d", i+1) {
			t.Errorf("rule %d name %v", i+1, rm["name"])
		}
	}
	if got := fmt.Sprint(rules[0].(map[string]any)["ports"]); got != "[25 587]" {
		t.Errorf("rule 1 ports %s, want [25 587]", got)
	}
	if got := fmt.Sprint(rules[6].(map[string]any)["ports"]); got != "[21-25 8080]" {
		t.Errorf("rule 7 ports %s, want [21-25 8080]", got)
	}
	if _, ok := rules[11].(map[string]any)["ports"]; ok {
		t.Error(`ports="all" should omit ports`)
	}
}

// TestHeaderAndLines checks the header comment, and the comment above each
// rule naming the line of its Tectia <rule>.
func TestHeaderAndLines(t *testing.T) {
	res := convertFile(t, "testdata/broker-config.xml", Options{})
	out := string(res.YAML)
	if !strings.HasPrefix(out, "# Converted by shunt import-tectia from broker-config.xml.\n") {
		t.Errorf("header missing:\n%s", out)
	}
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^  # broker-config\.xml:(\d+)\n  - name: rule-`).FindAllStringSubmatch(out, -1) {
		lines = append(lines, m[1])
	}
	want := []string{"30", "32", "33", "34", "35", "37", "39", "40", "42", "43", "44", "45"}
	if !slices.Equal(lines, want) {
		t.Errorf("rule lines %v, want %v", lines, want)
	}
}

func TestConvertProblems(t *testing.T) {
	res := convertFile(t, "testdata/unconvertible.xml", Options{})
	want := []string{
		`unconvertible.xml:7: general setting <crypto-lib mode="fips">: shunt has no FIPS 140-2 mode (it uses golang.org/x/crypto) (not converted)`,
		`unconvertible.xml:8: general setting <strict-host-key-checking>: shunt's host_key_policy (strict, accept-new or ask; strict unless set) is set per profile (not converted)`,
		`unconvertible.xml:11: default-settings: <macs>: shunt has no setting for these algorithms (it offers golang.org/x/crypto's defaults), so it cannot keep this list (not converted)`,
		`unconvertible.xml:15: default-settings: attribute signature-algorithms of <auth-publickey> has no shunt equivalent (not converted)`,
		`unconvertible.xml:17: default-settings: proxy ruleset: condition "10.0.0.0/8:22" has a port range (:22): shunt's proxy rules choose by the server's name or address only (not converted)`,
		`unconvertible.xml:21: profile "gateway": shunt has none of the authentication methods gssapi-with-mic (it has publickey, keyboard-interactive and password) (not converted)`,
		`unconvertible.xml:24: profile "gateway": idle-timeout 0 closes the connection as soon as its last channel closes, which shunt cannot say (idle_timeout 0 means its default, 10m): set a short idle_timeout, e.g. 1s, by hand (not converted)`,
		`unconvertible.xml:26: profile id "gw" is used again (first at line 20) (not converted)`,
		`unconvertible.xml:27: profile port "ssh" is not a port (1-65535) (not converted)`,
		`unconvertible.xml:29: profile "lost": gateway-profile "nowhere" names no profile (not converted)`,
		`unconvertible.xml:30: profile "loop-a": its gateway-profile chain loops back to it (not converted)`,
		`unconvertible.xml:31: profile "loop-b": its gateway-profile "loop-a" (line 30) has a problem (not converted)`,
		`unconvertible.xml:32: profile "via-lost": its gateway-profile "lost" (line 28) has a problem (not converted)`,
		`unconvertible.xml:33: profile attribute compression is not understood (not converted)`,
		`unconvertible.xml:34: profile "odd": none of the ciphers twofish256-cbc is one shunt implements (aes128-gcm@openssh.com, aes256-gcm@openssh.com, chacha20-poly1305@openssh.com, aes128-ctr, aes192-ctr, aes256-ctr) (not converted)`,
		`unconvertible.xml:38: profile protocol "secsh1": shunt speaks SSH 2 (secsh2) only (not converted)`,
		`unconvertible.xml:41: static tunnel ftp listening on port 2121 to ftp.example.com:21 through profile "gw": an FTP tunnel also carries FTP's data connections, which shunt does not follow; a tcp tunnel to port 21 would carry the control connection only (use passive FTP through a SOCKS listener, or SFTP) (not converted)`,
		`unconvertible.xml:44: static tunnel tcp listening on 127.0.0.1:2525 to smtp.example.com:25 through profile "p3": its profile "bad-port" (line 27) has a problem (not converted)`,
		`unconvertible.xml:47: <dns> inside <filter-engine> is an older filter format; only <rule> (and <network>) elements convert: write the rule with host or ip-address (not converted)`,
		`unconvertible.xml:49: rule 1: applies only in network "home" (line 48), and shunt has no location awareness: it would apply the rule in every network (not converted)`,
		`unconvertible.xml:51: rule 2: ip-address "10\.1\.(2|3)\..*" is a regular expression with no exact shunt equivalent; convertible forms: a literal address (10\.1\.2\.3), ".*", or a whole-octet prefix (10\.1\..*) (not converted)`,
		`unconvertible.xml:52: rule 3: ip-address "10\.1[0-9]\..*" is a regular expression with no exact shunt equivalent; convertible forms: a literal address (10\.1\.2\.3), ".*", or a whole-octet prefix (10\.1\..*) (not converted)`,
		`unconvertible.xml:53: rule 4: ip-address "10\.1.*" ends inside an octet, so it also matches octets that only begin with 1 (such as 10): for a whole-octet prefix write 10\.1\..* (not converted)`,
		`unconvertible.xml:54: rule 5: ip-address "10.1..*" has an unescaped '.', which matches any character, so it also matches addresses outside the prefix it spells: escape it, e.g. 10\.1\..* (not converted)`,
		`unconvertible.xml:55: rule 6: ip-address "10\.1\.2\.300": octet "300" is not written as in an address (0-255, no leading zeros), so the pattern never matches (not converted)`,
		`unconvertible.xml:56: rule 7: ip-address "010\.1\.2\.3": octet "010" is not written as in an address (0-255, no leading zeros), so the pattern never matches (not converted)`,
		`unconvertible.xml:57: rule 8: ip-address "10\.1\.2\.3\.4" has 5 octets, so it never matches an IPv4 address; convertible forms: a literal address (10\.1\.2\.3), ".*", or a whole-octet prefix (10\.1\..*) (not converted)`,
		`unconvertible.xml:58: rule 9: host ".*example\.com" also matches names that merely end in example.com (such as myexample.com), which shunt cannot express: for the names under example.com write .*\.example\.com (not converted)`,
		`unconvertible.xml:59: rule 10: host ".*.example\.com": the '.' after .* is unescaped and matches any character, so this also matches names such as myexample.com: for the names under example.com write .*\.example\.com (not converted)`,
		`unconvertible.xml:60: rule 11: host "(www|mail)\.example\.com" is a regular expression with no exact shunt equivalent; convertible forms: a name (mail\.example\.com), ".*", any name under a domain (.*\.example\.com), or a domain and the names under it ((.*\.)?example\.com) (not converted)`,
		`unconvertible.xml:61: rule 12: action "ftp-sftp" has no shunt equivalent (shunt has tunnel, direct and block) (not converted)`,
		`unconvertible.xml:62: rule 13: tunnels but names no profile (profile-id) (not converted)`,
		`unconvertible.xml:63: rule 14: ports "25-21": "25-21" is not a port or range within 1-65535 (write e.g. 25, 21-25, or 25,110,143) (not converted)`,
		`unconvertible.xml:64: rule 15: attribute host-name is not in ssh-broker-config(5): a rule's host-name pattern is its host attribute (not converted)`,
		`unconvertible.xml:68: rule 16: pseudo-ip: shunt has no pseudo IP addresses for names this machine cannot resolve (not converted)`,
		`unconvertible.xml:70: rule 17: hostname-from-app "maybe" is not yes or no (not converted)`,
		`unconvertible.xml:71: rule 18: has no action (tunnel, direct or block) (not converted)`,
		`unconvertible.xml:72: rule 19: its profile "p3" (line 27) has a problem (not converted)`,
		`unconvertible.xml:73: rule 20: its profile "p7" (line 32) has a problem (not converted)`,
		`unconvertible.xml:74: rule 21: application "C:\\Apps\\.*\.exe" is a regular expression with no exact shunt equivalent; convertible forms: a program name (thunderbird), .*name.* (converted to the name), or alternatives of these (thunderbird|evolution) (not converted)`,
		`unconvertible.xml:75: rule 22: application "firefox.exe, chrome.exe": a comma is an ordinary character in a regular expression, so this names one program with a comma in its name: for several programs write a|b; convertible forms: a program name (thunderbird), .*name.* (converted to the name), or alternatives of these (thunderbird|evolution) (not converted)`,
		`unconvertible.xml:76: rule 23: application "mutt[0-9]" is a regular expression with no exact shunt equivalent; convertible forms: a program name (thunderbird), .*name.* (converted to the name), or alternatives of these (thunderbird|evolution) (not converted)`,
		`unconvertible.xml:77: rule 24: applies only in network "home" (line 48), and shunt has no location awareness: it would apply the rule in every network (not converted)`,
		`unconvertible.xml:79: rule 25: destination rewrites where the connection goes, which shunt cannot do (not converted)`,
		`unconvertible.xml:80: rule 26: host "mail_2\.example\.com": "mail_2.example.com" is not a host name shunt can resolve (labels of letters, digits and inner hyphens, between dots) (not converted)`,
	}
	var got []string
	for _, p := range res.Problems {
		got = append(got, p.String())
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems differ:\n--- got\n%s\n--- want\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !res.Failed(Options{}) {
		t.Error("Failed() = false with problems and no --best-effort")
	}
	if res.Failed(Options{BestEffort: true}) {
		t.Error("Failed() = true with --best-effort")
	}

	// With --best-effort, the rest converts: rule 27 through a profile
	// with an unconverted setting, and the profiles without problems
	// that make them wrong.
	best := convertFile(t, "testdata/unconvertible.xml", Options{BestEffort: true})
	golden(t, "testdata/unconvertible.golden", best.YAML)
	m := parseYAML(t, best.YAML)
	var names []string
	for _, p := range m["profiles"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if want := []string{"gateway", "odd"}; !slices.Equal(names, want) {
		t.Errorf("converted profiles %v, want %v", names, want)
	}
	rules := m["rules"].([]any)
	if len(rules) != 1 || rules[0].(map[string]any)["name"] != "rule-27" {
		t.Errorf("converted rules %v, want only rule-27", rules)
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, xml, want string
	}{
		{"malformed", "", "malformed.xml:5: malformed XML: element <profile> closed by </profiles>"},
		{"unclosed", "<secsh-broker>\n  <profiles>\n", "unclosed.xml:3: malformed XML: unexpected EOF"},
		{"root", "<?xml version=\"1.0\"?>\n\n<broker/>\n", "root.xml:3: the root element is <broker>, not <secsh-broker>: this is not a Tectia Connection Broker configuration"},
		{"empty", "", ""},
		{"encoding", "<?xml version=\"1.0\" encoding=\"EBCDIC\"?>\n<secsh-broker/>\n", "encoding.xml:1: cannot read the XML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.name == "malformed" {
				f, ferr := os.Open("testdata/malformed.xml")
				if ferr != nil {
					t.Fatal(ferr)
				}
				defer f.Close()
				_, err = Convert(f, "malformed.xml", Options{})
			} else {
				_, err = Convert(strings.NewReader(tc.xml), tc.name+".xml", Options{})
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want != "" && !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q", err, tc.want)
			}
			if !regexp.MustCompile(`^` + tc.name + `\.xml:\d+: `).MatchString(err.Error()) {
				t.Errorf("error %q does not name the file and line", err)
			}
		})
	}
}

func TestLatin1(t *testing.T) {
	in := "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<secsh-broker><profiles>" +
		"<profile id=\"a\" name=\"B\xfcro\" host=\"h.example\"/></profiles></secsh-broker>\n"
	res, err := Convert(strings.NewReader(in), "latin1.xml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(res.YAML, []byte("- name: b-ro\n")) {
		t.Errorf("profile name not sanitised as expected:\n%s", res.YAML)
	}
}

func TestProfileNames(t *testing.T) {
	in := `<secsh-broker><profiles>
<profile id="x" name="My Server" host="a"/>
<profile id="y" name="my server" host="b"/>
<profile id="z" host="c"/>
<profile host="d"/>
<profile id="w" name="&quot;true&quot;" host="e"/>
</profiles></secsh-broker>`
	res, err := Convert(strings.NewReader(in), "n.xml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := parseYAML(t, res.YAML)
	var names []string
	for _, p := range m["profiles"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if want := []string{"my-server", "my-server-2", "z", "profile-4", "true"}; !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
	if !bytes.Contains(res.YAML, []byte(`- name: "true"`)) {
		t.Errorf("a name YAML would read as a boolean is not quoted:\n%s", res.YAML)
	}
}

func TestIPPattern(t *testing.T) {
	for _, tc := range []struct {
		in, dest string
		any, bad bool
	}{
		{in: ".*", any: true},
		{in: "^.*$", any: true},
		{in: ".+", any: true},
		{in: "", any: true},
		{in: `10\.1\.2\.3`, dest: "10.1.2.3"},
		{in: `10.1.2.3`, dest: "10.1.2.3"},
		{in: `10\.1.2\.3`, dest: "10.1.2.3"},
		{in: `^10\.1\.2\.3$`, dest: "10.1.2.3"},
		{in: `10\..*`, dest: "10.0.0.0/8"},
		{in: `10\.1\..*`, dest: "10.1.0.0/16"},
		{in: `192\.168\.1\..*`, dest: "192.168.1.0/24"},
		{in: `192\.168\.1\..+`, dest: "192.168.1.0/24"},
		{in: `10\.1\.\d+\.\d+`, dest: "10.1.0.0/16"},
		{in: `10\.1\.[0-9]{1,3}\.[0-9]+`, dest: "10.1.0.0/16"},
		{in: `10.1.\d+.\d+`, dest: "10.1.0.0/16"},
		{in: `\d+\.\d+\.\d+\.\d+`, any: true},
		{in: `0\.0\.0\.0`, dest: "0.0.0.0"},
		{in: `fd00::1`, dest: "fd00::1"},
		{in: `10\.1[0-9]\..*`, bad: true},
		{in: `10\.1\.(2|3)\..*`, bad: true},
		{in: `10\.1\.[23]\..*`, bad: true},
		{in: `10\.1.*`, bad: true},
		{in: `10.1..*`, bad: true},
		{in: `10.1\..*`, bad: true},
		{in: `1.1\..*`, bad: true},
		{in: `10\.1\.2`, bad: true},
		{in: `10\.1\.2\.`, bad: true},
		{in: `10\.\.2\.3`, bad: true},
		{in: `10\.1\.2\.3\..*`, bad: true},
		{in: `10\.\d+\.2\.3`, bad: true},
		{in: `10\.1\.2\.256`, bad: true},
		{in: `10\.01\.2\.3`, bad: true},
		{in: `.*\.1`, bad: true},
		{in: `10\.1\.2\.3|10\.1\.2\.4`, bad: true},
		{in: `10\.1\.2\.[0-9]`, bad: true},
	} {
		dest, any, why := ipPattern(tc.in)
		if (why != "") != tc.bad || any != tc.any || dest != tc.dest {
			t.Errorf("ipPattern(%q) = %q, %v, %q; want %q, any %v, bad %v", tc.in, dest, any, why, tc.dest, tc.any, tc.bad)
		}
	}
}

// TestIPPatternExact checks the claim behind every conversion: the regular
// expression (matched against the whole dotted address, as Tectia does)
// matches exactly the addresses of the network it was converted to. For
// refused prefixes with an unescaped dot or a partial octet, it finds an
// address that shows why.
func TestIPPatternExact(t *testing.T) {
	var sample []netip.Addr
	interesting := []byte{0, 1, 2, 3, 5, 9, 10, 11, 12, 19, 20, 25, 30, 40, 99, 100, 101, 110, 111, 168, 192, 199, 200, 250, 255}
	for a := 0; a < 256; a++ {
		for _, b := range interesting {
			for _, c := range []byte{0, 2, 255} {
				for _, d := range []byte{0, 3, 255} {
					sample = append(sample, netip.AddrFrom4([4]byte{byte(a), b, c, d}))
				}
			}
		}
	}
	check := func(pattern string) (inexact string) {
		re := regexp.MustCompile(`^(?:` + strings.TrimSuffix(strings.TrimPrefix(pattern, "^"), "$") + `)$`)
		dest, any, why := ipPattern(pattern)
		var net netip.Prefix
		switch {
		case why != "":
		case any:
			net = netip.MustParsePrefix("0.0.0.0/0")
		case strings.Contains(dest, "/"):
			net = netip.MustParsePrefix(dest)
		default:
			a := netip.MustParseAddr(dest)
			net = netip.PrefixFrom(a, 32)
		}
		for _, a := range sample {
			inNet := net.IsValid() && net.Contains(a)
			if re.MatchString(a.String()) != inNet {
				return a.String()
			}
		}
		return ""
	}
	for _, p := range []string{
		".*", `10\.1\.2\.3`, `10.1.2.3`, `1.2.2.3`, `10\.1.2\.3`, `10\..*`, `10\.1\..*`,
		`192\.168\.1\..*`, `10\.1\.\d+\.\d+`, `10.1.\d+.\d+`, `0\.1\.2\.0`, `^10\.1\.2\.3$`,
	} {
		if a := check(p); a != "" {
			t.Errorf("%q converts to %v, but the regexp disagrees on %s", p, first(ipPattern(p)), a)
		}
	}
	for _, p := range []string{`10.1..*`, `1.1\..*`, `10\.1.*`, `10.*`, `1\.1.*`} {
		if _, _, why := ipPattern(p); why == "" {
			t.Errorf("%q converts, but should not", p)
		}
		if a := check(p); a == "" {
			t.Errorf("%q is refused, yet no sampled address shows it inexact", p)
		}
	}
}

func first(s string, _ bool, _ string) string { return s }

func TestHostPattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		any  bool
		bad  bool
	}{
		{in: ".*", any: true},
		{in: `mail\.example\.com`, want: []string{"mail.example.com"}},
		{in: `Mail.Example.com`, want: []string{"mail.example.com"}},
		{in: `^mail\.example\.com$`, want: []string{"mail.example.com"}},
		{in: `intranet`, want: []string{"intranet"}},
		{in: `.*\.example\.com`, want: []string{"*.example.com"}},
		{in: `.+\.example\.com`, want: []string{"*.example.com"}},
		{in: `(.*\.)?example\.com`, want: []string{"example.com", "*.example.com"}},
		{in: `.*example\.com`, bad: true},
		{in: `.*.example\.com`, bad: true},
		{in: `mail[0-9]\.example\.com`, bad: true},
		{in: `(www|mail)\.example\.com`, bad: true},
		{in: `mail\.example\..*`, bad: true},
	} {
		got, any, why := hostPattern(tc.in)
		if (why != "") != tc.bad || any != tc.any || !slices.Equal(got, tc.want) {
			t.Errorf("hostPattern(%q) = %v, %v, %q; want %v, any %v, bad %v", tc.in, got, any, why, tc.want, tc.any, tc.bad)
		}
	}
}

func TestPortsPattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		any  bool
		bad  bool
	}{
		{in: "", any: true},
		{in: "all", any: true},
		{in: "ALL", any: true},
		{in: "25", want: []string{"25"}},
		{in: "21-25", want: []string{"21-25"}},
		{in: "25, 110,143-145", want: []string{"25", "110", "143-145"}},
		{in: "80-80", want: []string{"80"}},
		{in: "0", bad: true},
		{in: "65536", bad: true},
		{in: "25-21", bad: true},
		{in: "smtp", bad: true},
		{in: "25,", bad: true},
	} {
		got, any, why := portsPattern(tc.in)
		if (why != "") != tc.bad || any != tc.any || !slices.Equal(got, tc.want) {
			t.Errorf("portsPattern(%q) = %v, %v, %q; want %v, any %v, bad %v", tc.in, got, any, why, tc.want, tc.any, tc.bad)
		}
	}
}

func TestScalar(t *testing.T) {
	for _, s := range []string{"office", "10.1.0.0/16", "*.example.com", "true", "yes", "null", "1e3", "0x10", "a: b", "#x", "fd00::1", "tab\there", "ünï", `back\slash"quote`} {
		var v string
		if err := yaml.Unmarshal([]byte(scalar(s)), &v); err != nil || v != s {
			t.Errorf("scalar(%q) = %s, reads back as %q (%v)", s, scalar(s), v, err)
		}
	}
}

// TestConvertStaticTunnels: static tunnels, a profile's local tunnel and
// Tectia's SOCKS listener convert to listeners shunt opens as Tectia did.
func TestConvertStaticTunnels(t *testing.T) {
	res := convertFile(t, "testdata/static-tunnels.xml", Options{})
	for _, p := range res.Problems {
		t.Errorf("unexpected problem: %s", p)
	}
	golden(t, "testdata/static-tunnels.golden", res.YAML)
	cfg := validate(t, "static-tunnels.yaml", res.YAML)
	type listener struct {
		kind, addr, dest, profile, allow string
	}
	var got []listener
	for _, l := range cfg.Listeners() {
		dest := ""
		if l.Host != "" {
			dest = net.JoinHostPort(l.Host, strconv.Itoa(int(l.Port)))
		}
		got = append(got, listener{l.Kind, l.Addr.String(), dest, l.Profile, fmt.Sprint(l.AllowFrom)})
	}
	want := []listener{
		{config.ListenSOCKS, "127.0.0.1:1080", "", "", "[]"},
		{config.ListenStatic, "127.0.0.1:5901", "vnc.example.com:5900", "office", "[]"},
		{config.ListenStatic, "127.0.0.1:143", "imap.example.com:143", "office", "[]"},
		{config.ListenStatic, "127.0.0.1:1025", "smtp.example.com:25", "office", "[]"},
		{config.ListenStatic, "0.0.0.0:3389", "10.1.2.3:3389", "lab", "[0.0.0.0/0]"},
		{config.ListenStatic, "192.168.50.1:8443", "wiki.example.com:443", "lab", "[192.168.50.1/32]"},
		{config.ListenStatic, "[::1]:8080", "[fd00::80]:80", "lab", "[]"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("listeners:\n got %v\nwant %v", got, want)
	}
	var notes []string
	for _, n := range res.Notes {
		notes = append(notes, n.String())
	}
	for _, w := range []string{
		`static-tunnels.xml:17: note: static tunnel TCP listening on port 143 to imap.example.com:143 through profile "id1": port 143 is below 1024`,
		`static-tunnels.xml:24: note: static tunnel tcp listening on port 3389 to 10.1.2.3:3389 through profile "id2": allow-relay lets any host connect; the converted listener has allow_from: 0.0.0.0/0`,
		`static-tunnels.xml:26: note: static tunnel tcp listening on 192.168.50.1:8443 to wiki.example.com:443 through profile "id2": without allow-relay only this host may connect`,
		`static-tunnels.xml:9: note: profile "office": local tunnel tcp listening on port 5901 to vnc.example.com:5900: Tectia listens on a profile's local tunnel while a connection with the profile is open`,
	} {
		if !slices.ContainsFunc(notes, func(n string) bool { return strings.HasPrefix(n, w) }) {
			t.Errorf("no note beginning %q in:\n%s", w, strings.Join(notes, "\n"))
		}
	}
}

// TestStaticTunnelProblems: what a static tunnel cannot be converted to is
// said at its line, and the rest of the file still converts.
func TestStaticTunnelProblems(t *testing.T) {
	for _, tc := range []struct{ name, tunnels, want string }{
		{"remote", `<profiles><profile id="p" host="h.example.com"><tunnels><remote-tunnel listen-port="80" dst-host="localhost" dst-port="80"/></tunnels></profile></profiles>`,
			`t.xml:1: profile "p": remote tunnel listening on port 80 to localhost:80: shunt does not listen on the server's side (ssh -R)`},
		{"default-settings", `<default-settings><tunnels><local-tunnel listen-port="80" dst-host="a.example.com" dst-port="80"/></tunnels></default-settings>`,
			`t.xml:1: default-settings: local tunnel listening on port 80 to a.example.com:80: in default-settings it would be every profile's`},
		{"no profile", `<static-tunnels><tunnel listen-port="2000" dst-host="a.example.com" dst-port="80"/></static-tunnels>`,
			`t.xml:1: static tunnel listening on port 2000 to a.example.com:80: no profile to go through`},
		{"unknown profile", `<static-tunnels><tunnel listen-port="2000" dst-host="a.example.com" dst-port="80" profile="x"/></static-tunnels>`,
			`t.xml:1: static tunnel listening on port 2000 to a.example.com:80 through profile "x": profile "x" names no profile`},
		{"hostless profile", `<profiles><profile id="any"/></profiles><static-tunnels><tunnel listen-port="2000" dst-host="a.example.com" dst-port="80" profile="any"/></static-tunnels>`,
			`its profile "any" has no host`},
		{"bad port", `<profiles><profile id="p" host="h.example.com"/></profiles><static-tunnels><tunnel listen-port="0" dst-host="a.example.com" dst-port="80" profile="p"/></static-tunnels>`,
			`listen-port "0" is not a port (1-65535)`},
		{"bad host", `<profiles><profile id="p" host="h.example.com"/></profiles><static-tunnels><tunnel listen-port="2000" dst-host="a_b.example.com" dst-port="80" profile="p"/></static-tunnels>`,
			`dst-host "a_b.example.com" is not a host name or address`},
		{"bad address", `<profiles><profile id="p" host="h.example.com"/></profiles><static-tunnels><tunnel listen-address="myhost" listen-port="2000" dst-host="a.example.com" dst-port="80" profile="p"/></static-tunnels>`,
			`listen-address "myhost" is not an IP address`},
		{"taken", `<profiles><profile id="p" host="h.example.com"/></profiles><static-tunnels><tunnel listen-port="2000" dst-host="a.example.com" dst-port="80" profile="p" allow-relay="yes"/><tunnel listen-port="2000" dst-host="b.example.com" dst-port="80" profile="p"/></static-tunnels>`,
			`tunnel listening on port 2000 to b.example.com:80 through profile "p": 127.0.0.1:2000 is taken by the tunnel at line 1`},
		{"attribute", `<profiles><profile id="p" host="h.example.com"/></profiles><static-tunnels><tunnel listen-port="2000" dst-host="a.example.com" dst-port="80" profile="p" colour="red"/></static-tunnels>`,
			`attribute colour of <tunnel> is not understood`},
		{"socks with destination", `<static-tunnels><tunnel type="socks-proxy" listen-port="1080" dst-host="a.example.com"/></static-tunnels>`,
			`a SOCKS listener with dst-host, dst-port or profile has no shunt equivalent`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := convertString(t, `<secsh-broker>`+tc.tunnels+`</secsh-broker>`, Options{BestEffort: true})
			texts := problemTexts(res)
			if !slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("no problem containing %q in:\n%s", tc.want, strings.Join(texts, "\n"))
			}
			if cfg := validate(t, "t.yaml", res.YAML); len(cfg.StaticTunnels) > 1 {
				t.Errorf("%d static tunnels converted, want at most 1:\n%s", len(cfg.StaticTunnels), res.YAML)
			}
		})
	}
}

// TestSOCKSRelay: Tectia's SOCKS listener with allow-relay listens on
// every address and lets any host in, which the output says.
func TestSOCKSRelay(t *testing.T) {
	res := convertString(t, `<secsh-broker><static-tunnels>
<tunnel type="socks-proxy" listen-port="1080" allow-relay="yes"/>
</static-tunnels></secsh-broker>`, Options{})
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %v", res.Problems)
	}
	cfg := validate(t, "t.yaml", res.YAML)
	ls := cfg.Listeners()
	if len(ls) != 1 || ls[0].Kind != config.ListenSOCKS || ls[0].Addr.String() != "0.0.0.0:1080" || fmt.Sprint(ls[0].AllowFrom) != "[0.0.0.0/0]" {
		t.Errorf("listeners %+v, want SOCKS on 0.0.0.0:1080 from 0.0.0.0/0\n%s", ls, res.YAML)
	}
	if !strings.Contains(string(res.YAML), "allow_from: [0.0.0.0/0] # from allow-relay") {
		t.Errorf("allow_from without its comment:\n%s", res.YAML)
	}
}
