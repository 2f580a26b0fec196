package broker

import (
	"net/netip"
	"strings"
	"testing"
)

func mustProxy(t *testing.T, s string) *Profile {
	t.Helper()
	u, err := ParseProxy(s)
	if err != nil {
		t.Fatal(err)
	}
	return &Profile{Proxy: u}
}

func TestRoute(t *testing.T) {
	profiles := []Profile{
		{Name: "office", Hosts: []string{"gw.corp.example"}, User: "alice"},
		{Name: "lab", Hosts: []string{"10.2.0.9"}, User: "alice", Port: 2222},
		{Name: "bastion", Hosts: []string{"bastion.example"}, User: "bob"},
		{Name: "deep", Hosts: []string{"10.3.0.9"}, User: "carol", Jump: "bastion"},
		{Name: "deeper", Hosts: []string{"10.4.0.9"}, User: "dave", Jump: "deep"},
		{Name: "own-proxy", Hosts: []string{"gw.corp.example"}, User: "alice", Proxy: mustProxy(t, "socks5://u:secret@proxy.example:1080").Proxy},
		{Name: "failover", Hosts: []string{"gw1.corp.example", "192.0.2.1"}, User: "alice"},
		{Name: "via-only", User: "eve"},
		{Name: "elsewhere", Hosts: []string{"ssh.example.org"}, User: "alice"},
	}
	rules := []ProxyRule{
		{Hosts: []string{"*.corp.example"}, Proxy: mustProxy(t, "http://user:pw@proxy.corp.example:3128").Proxy},
		{Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{Hosts: []string{"bastion.example"}, Proxy: mustProxy(t, "socks4a://proxy.example:1080").Proxy},
	}
	tests := []struct {
		profile, server string
		want            string
	}{
		{"office", "", "via http://user:xxxxx@proxy.corp.example:3128 (proxy rule 1) to alice@gw.corp.example:22"},
		{"lab", "", "direct to alice@10.2.0.9:2222 (proxy rule 2)"},
		{"elsewhere", "", "direct to alice@ssh.example.org:22"},
		{"own-proxy", "", "via socks5://u:xxxxx@proxy.example:1080 (profile own-proxy's proxy) to alice@gw.corp.example:22"},
		{"deep", "", "via socks4a://proxy.example:1080 (proxy rule 3) to bob@bastion.example:22 (profile bastion), then through that connection to carol@10.3.0.9:22"},
		{"deeper", "", "via socks4a://proxy.example:1080 (proxy rule 3) to bob@bastion.example:22 (profile bastion), then through that connection to carol@10.3.0.9:22 (profile deep), then through that connection to dave@10.4.0.9:22"},
		{"failover", "", "via http://user:xxxxx@proxy.corp.example:3128 (proxy rule 1) to alice@gw1.corp.example:22; if that fails, direct to alice@192.0.2.1:22"},
		// Host from application: the destination itself, with the
		// profile's settings and the proxy rules for it.
		{"via-only", "10.9.9.9", "direct to eve@10.9.9.9:22 (proxy rule 2)"},
		{"deep", "10.3.7.7", "via socks4a://proxy.example:1080 (proxy rule 3) to bob@bastion.example:22 (profile bastion), then through that connection to carol@10.3.7.7:22"},
		{"via-only", "[fd00::1]", "direct to eve@[fd00::1]:22"},
	}
	for _, tt := range tests {
		t.Run(tt.profile+" "+tt.server, func(t *testing.T) {
			server := strings.Trim(tt.server, "[]")
			got, err := Route(profiles, rules, tt.profile, server)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Route =\n%s\nwant\n%s", got, tt.want)
			}
			if strings.Contains(got, "secret") || strings.Contains(got, ":pw@") {
				t.Errorf("a proxy password shows: %s", got)
			}
		})
	}
}

func TestRouteErrors(t *testing.T) {
	profiles := []Profile{
		{Name: "a", Hosts: []string{"a.example"}, Jump: "b"},
		{Name: "b", Hosts: []string{"b.example"}, Jump: "a"},
		{Name: "c", Hosts: []string{"c.example"}, Jump: "nosuch"},
		{Name: "d", Hosts: []string{"d.example"}, Jump: "e"},
		{Name: "e"},
	}
	for _, tt := range []struct{ profile, server, want string }{
		{"a", "", "profiles jump in a loop: a → b → a"},
		{"c", "", `profile "c" jumps through unknown profile "nosuch"`},
		{"d", "", `profile "e" has no host`},
		{"e", "", `profile "e" has no host`},
		{"x", "", `no connection profile "x"`},
	} {
		if _, err := Route(profiles, nil, tt.profile, tt.server); err == nil || err.Error() != tt.want {
			t.Errorf("Route(%s) error = %v, want %s", tt.profile, err, tt.want)
		}
	}
}

// Route and connecting choose the same way: both go through hopTo, and
// the words in connection errors are the ones they have always been.
func TestRouteAgreesWithConnecting(t *testing.T) {
	rules := []ProxyRule{
		{Hosts: []string{"*.corp.example"}, Proxy: mustProxy(t, "socks5://proxy.example:1080").Proxy},
		{Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
	}
	b, err := New(nil, Options{ProxyRules: rules})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, tt := range []struct {
		p         Profile
		host, how string
		proxied   bool
	}{
		{Profile{Name: "x"}, "gw.corp.example", "via socks5://proxy.example:1080 (proxy rule 1)", true},
		{Profile{Name: "x"}, "10.1.1.1", "direct (proxy rule 2)", false},
		{Profile{Name: "x"}, "192.0.2.1", "direct", false},
		{Profile{Name: "x", Jump: "j"}, "gw.corp.example", "via jump profile j", false},
		{*mustProxy(t, "http://proxy.example:3128"), "gw.corp.example", "via http://proxy.example:3128", true},
	} {
		proxy, how := b.route(&tt.p, tt.host)
		if how != tt.how || (proxy != nil) != tt.proxied {
			t.Errorf("route(%s) = %v, %q; want %q (proxied %v)", tt.host, proxy, how, tt.how, tt.proxied)
		}
	}
}
