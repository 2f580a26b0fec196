package router

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/events"
	"github.com/shunt-dev/shunt/router/routertest"
	"github.com/shunt-dev/shunt/state"
)

// Flows to a name: the application looked the name up, got a fake address
// from shunt's DNS server, and connected to it; netstack hands the name
// over as the flow's Host.

var hostRules = []Rule{
	// A network that holds the fake addresses, and one that holds
	// everything: a flow to a name matches neither.
	{Name: "fakes", Destinations: pfx("198.18.0.0/15", "fd53:6875:6e74:fa6e::/64"), Action: Block},
	{Name: "mail", Hosts: []string{"mail.corp.example"}, Ports: []PortRange{{993, 993}}, Action: Tunnel, Profile: "office"},
	{Name: "mixed", Destinations: pfx("10.0.0.0/8"), Hosts: []string{"other.example"}, Action: Block},
	{Name: "corp", Domains: []string{"*.corp.example"}, Action: Tunnel, Profile: "office"},
	{Name: "everything", Destinations: pfx("0.0.0.0/0", "::/0"), Action: Block},
}

func hostFlow(host, dst string) Flow {
	return Flow{Src: ap("192.0.2.1:40000"), Dst: ap(dst), Host: host}
}

func TestDecideByHost(t *testing.T) {
	rs := Compile(hostRules)
	for _, tt := range []struct {
		name string
		f    Flow
		want int
		why  string
	}{
		{"host rule", hostFlow("mail.corp.example", "198.18.0.3:993"), 1,
			"destination mail.corp.example (fake 198.18.0.3) is mail.corp.example, port 993 in 993"},
		{"host rule, IPv6", hostFlow("mail.corp.example", "[fd53:6875:6e74:fa6e::3]:993"), 1,
			"destination mail.corp.example (fake fd53:6875:6e74:fa6e::3) is mail.corp.example, port 993 in 993"},
		{"name not canonical", hostFlow("Mail.Corp.Example.", "198.18.0.3:993"), 1, ""},
		{"domain rule", hostFlow("mail.corp.example", "198.18.0.3:25"), 3,
			"destination mail.corp.example (fake 198.18.0.3) is mail.corp.example, in *.corp.example, any port"},
		{"domain rule, another name", hostFlow("wiki.corp.example", "198.18.0.4:443"), 3,
			"destination wiki.corp.example (fake 198.18.0.4) is wiki.corp.example, in *.corp.example, any port"},
		{"the domain itself is not under it", hostFlow("corp.example", "198.18.0.5:443"), -1, "no rule matches: direct"},
		{"no rule by name, and none by network", hostFlow("www.example.org", "198.18.0.6:443"), -1, "no rule matches: direct"},
		{"the same address without a name", flow("198.18.0.3:993"), 0,
			"destination 198.18.0.3 in 198.18.0.0/15, any port"},
		// explain, for a name that has no fake address (yet).
		{"a name without an address", Flow{Dst: netip.AddrPortFrom(netip.Addr{}, 993), Host: "mail.corp.example"}, 1,
			"destination mail.corp.example is mail.corp.example, port 993 in 993"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if d := rs.Decide(tt.f); d.Index != tt.want {
				t.Errorf("Decide = rule %d (%s), want %d", d.Index, d.Why, tt.want)
			}
			d, _ := rs.Explain(tt.f)
			if d.Index != tt.want || tt.why != "" && d.Why != tt.why {
				t.Errorf("Explain = rule %d, %q; want %d, %q", d.Index, d.Why, tt.want, tt.why)
			}
		})
	}
}

// Explain says why the rules by network do not see a flow to a name.
func TestExplainHostSteps(t *testing.T) {
	_, steps := Compile(hostRules).Explain(hostFlow("www.example.org", "198.18.0.6:443"))
	want := []string{
		"destination www.example.org (fake 198.18.0.6) is a name: it matches no network [198.18.0.0/15 fd53:6875:6e74:fa6e::/64]",
		"destination www.example.org (fake 198.18.0.6) not in [mail.corp.example]",
		"destination www.example.org (fake 198.18.0.6) not in [other.example], and a name matches no network [10.0.0.0/8]",
		"destination www.example.org (fake 198.18.0.6) not in [*.corp.example]",
		"destination www.example.org (fake 198.18.0.6) is a name: it matches no network [0.0.0.0/0 ::/0]",
	}
	var got []string
	for _, s := range steps {
		if s.Matched {
			t.Errorf("step %+v matched", s)
		}
		got = append(got, s.Why)
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A rule by host name matches a flow to that name through the host
	// name, not through a network it also names.
	d, _ := Compile(hostRules).Explain(hostFlow("other.example", "198.18.0.7:80"))
	if d.Index != 2 || d.Why != "destination other.example (fake 198.18.0.7) is other.example, any port" {
		t.Errorf("Explain = rule %d, %q", d.Index, d.Why)
	}
	// A rule without a destination sees flows to names as any other.
	d, _ = Compile([]Rule{{Name: "telnet", Ports: []PortRange{{23, 23}}, Action: Block}}).Explain(hostFlow("old.example", "198.18.0.8:23"))
	if d.Index != 0 || d.Why != "any destination, port 23 in 23" {
		t.Errorf("Explain = rule %d, %q", d.Index, d.Why)
	}
}

// A flow to a name is dialled by the name: the channel goes to
// host:port, a host-from-application connection to the host itself, and
// a direct flow (also one falling back) to host:port, for the direct
// dialer to resolve. The log says the host.
func TestHandleTCPByHost(t *testing.T) {
	rules := []Rule{
		{Name: "mail", Hosts: []string{"mail.corp.example"}, Action: Tunnel, Profile: "office"},
		{Name: "own", Hosts: []string{"gw.corp.example"}, Action: Tunnel, Profile: "own", HostFromApplication: true},
		{Name: "fallback", Hosts: []string{"fb.corp.example"}, Action: Tunnel, Profile: "office", OnTunnelDown: TunnelDownDirect},
		{Name: "direct", Hosts: []string{"direct.example"}, Action: Direct},
	}
	for _, tt := range []struct {
		host, dst string
		fail      func(routertest.Call) error
		want      []string
	}{
		{"mail.corp.example", "198.18.0.3:993", nil, []string{"office/mail.corp.example:993"}},
		{"mail.corp.example", "[fd53:6875:6e74:fa6e::3]:993", nil, []string{"office/mail.corp.example:993"}},
		{"gw.corp.example", "198.18.0.4:8080", nil, []string{"own@gw.corp.example/gw.corp.example:8080"}},
		{"direct.example", "198.18.0.5:443", nil, []string{"direct/direct.example:443"}},
		{"www.example.org", "198.18.0.6:443", nil, []string{"direct/www.example.org:443"}},
		{"fb.corp.example", "198.18.0.7:80", func(c routertest.Call) error {
			if c.Profile != "" {
				return setupErr{}
			}
			return nil
		}, []string{"office/fb.corp.example:80", "direct/fb.corp.example:80"}},
		// Without a name, the address, as before.
		{"", "10.9.0.1:80", nil, []string{"direct/10.9.0.1:80"}},
	} {
		t.Run(tt.host+"_"+tt.dst, func(t *testing.T) {
			d := &routertest.Dialer{Fail: tt.fail}
			log, hook := test.NewNullLogger()
			r := New(rules, Options{Tunnels: d, Direct: d, Log: log})
			accepted := false
			r.HandleTCP(context.Background(), src, ap(tt.dst), tt.host, func() (net.Conn, error) { accepted = true; return appConn() })
			r.Wait()
			if !accepted {
				t.Error("the flow was not accepted")
			}
			if got := d.Dials(); !slices.Equal(got, tt.want) {
				t.Errorf("dials %q, want %q", got, tt.want)
			}
			for _, e := range hook.AllEntries() {
				if h, _ := e.Data["host"].(string); h != tt.host && !(tt.host == "" && e.Data["host"] == nil) {
					t.Errorf("log %q has host %v, want %q", e.Message, e.Data["host"], tt.host)
				}
			}
		})
	}
}

// The flow table and the events name the host a flow goes to, and the SSH
// server of a host-from-application flow by name.
func TestFlowTableShowsHost(t *testing.T) {
	u := newLoopUpstreams(t)
	var bus events.Bus
	sub := bus.Subscribe(10)
	defer sub.Close()
	log, _ := test.NewNullLogger()
	rules := []Rule{
		{Name: "mail", Hosts: []string{"mail.corp.example"}, Action: Tunnel, Profile: "office"},
		{Name: "own", Hosts: []string{"gw.corp.example"}, Action: Tunnel, Profile: "own", HostFromApplication: true},
	}
	r := New(rules, Options{Tunnels: u, Direct: u, Log: log, Events: &bus})
	open := func(host, dst string) (app, server net.Conn) {
		t.Helper()
		r.HandleTCP(context.Background(), src, ap(dst), host, func() (net.Conn, error) {
			var near net.Conn
			app, near = tcpPair(t)
			return near, nil
		})
		return app, <-u.far
	}
	app1, srv1 := open("mail.corp.example", "198.18.0.3:993")
	app2, srv2 := open("gw.corp.example", "198.18.0.4:22")
	got := r.Flows()
	if len(got) != 2 {
		t.Fatalf("Flows() = %+v", got)
	}
	if f := got[0]; f.Host != "mail.corp.example" || f.Name != "mail.corp.example" || f.Dst != "198.18.0.3:993" || f.Profile != "office" || f.Server != "" {
		t.Errorf("flow 1 = %+v", f)
	}
	if f := got[1]; f.Host != "gw.corp.example" || f.Server != "gw.corp.example" || f.Profile != "own" {
		t.Errorf("flow 2 = %+v, want its server gw.corp.example", f)
	}
	if e := <-sub.C(); e.Event != state.EventOpen || e.Flow.Host != "mail.corp.example" {
		t.Errorf("open event %q of host %q", e.Event, e.Flow.Host)
	} else if b, _ := json.Marshal(e.Flow); !strings.Contains(string(b), `"host":"mail.corp.example"`) {
		t.Errorf("the event's flow %s has no host", b)
	}
	endFlow(t, app1, srv1)
	endFlow(t, app2, srv2)
	r.Wait()
	// A flow to an address has no host, and its JSON none.
	app3, srv3 := openFlow(t, r, u, splices[0].wrap, "192.0.2.1:5003", "10.1.0.5:80")
	if f := r.Flows(); len(f) != 1 || f[0].Host != "" {
		t.Errorf("Flows() = %+v", f)
	} else if b, _ := json.Marshal(f[0]); strings.Contains(string(b), `"host"`) {
		t.Errorf("a flow to an address has a host: %s", b)
	}
	endFlow(t, app3, srv3)
	r.Wait()
}
