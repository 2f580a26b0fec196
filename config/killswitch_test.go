package config

import (
	"strings"
	"testing"
)

const tunnelDownProfile = "profiles:\n  - name: p\n    host: gw\nrules:\n"

func TestOnTunnelDown(t *testing.T) {
	for _, tt := range []struct {
		name, rule, want string
	}{
		{"default", "  - action: tunnel\n    profile: p\n", TunnelDownBlock},
		{"block", "  - action: tunnel\n    profile: p\n    on_tunnel_down: block\n", TunnelDownBlock},
		{"direct", "  - action: tunnel\n    profile: p\n    on_tunnel_down: direct\n", TunnelDownDirect},
		{"fallback_direct", "  - action: tunnel\n    profile: p\n    fallback_direct: true\n", TunnelDownDirect},
		{"both agree", "  - action: tunnel\n    profile: p\n    fallback_direct: true\n    on_tunnel_down: direct\n", TunnelDownDirect},
		{"fallback_direct false and direct", "  - action: tunnel\n    profile: p\n    fallback_direct: false\n    on_tunnel_down: direct\n", TunnelDownDirect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newTestEnv(t).parse("x.yaml", tunnelDownProfile+tt.rule)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Rules[0].TunnelDown(); got != tt.want {
				t.Errorf("TunnelDown() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOnTunnelDownErrors(t *testing.T) {
	for _, tt := range []struct {
		name, rule, want string
	}{
		{"contradiction", "  - action: tunnel\n    profile: p\n    fallback_direct: true\n    on_tunnel_down: block\n",
			`x.yaml:8: rule #1: on_tunnel_down: block contradicts fallback_direct: true (line 7): keep one of them`},
		{"unknown word", "  - name: mail\n    action: tunnel\n    profile: p\n    on_tunnel_down: fallback\n",
			`x.yaml:8: rule #1 "mail": unknown on_tunnel_down "fallback": use block (refuse the flow, the default) or direct`},
		{"not a tunnel", "  - action: block\n    on_tunnel_down: direct\n",
			`x.yaml:6: rule #1: on_tunnel_down only applies to action: tunnel`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestEnv(t).parse("x.yaml", tunnelDownProfile+tt.rule)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

func TestKillSwitch(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("x.yaml", tunnelDownProfile+"  - action: tunnel\n    profile: p\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.KillSwitch {
		t.Error("kill_switch is on by default")
	}
	if c, err = e.parse("x.yaml", "kill_switch: true\n"+tunnelDownProfile+"  - action: tunnel\n    profile: p\n"); err != nil || !c.KillSwitch {
		t.Fatalf("kill_switch: true: %v, %v", c, err)
	}
	if _, err := e.parse("x.yaml", "kill_switch: sometimes\n"); err == nil || !strings.Contains(err.Error(), "x.yaml:1") {
		t.Errorf("kill_switch: sometimes: %v", err)
	}
	// Later layers override, and a layer that does not write it keeps
	// the earlier one's.
	dir := e.dir()
	global := write(t, dir, "global.yaml", "kill_switch: true\n"+tunnelDownProfile+"  - action: tunnel\n    profile: p\n")
	silent := write(t, dir, "silent.yaml", "tun:\n  mtu: 9000\n")
	off := write(t, dir, "off.yaml", "kill_switch: false\n")
	l, err := LoadLayers(Layers{Global: global, User: silent, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if !l.KillSwitch {
		t.Error("a layer without kill_switch turned it off")
	}
	if l, err = LoadLayers(Layers{Global: global, User: off, Options: e.opts()}); err != nil || l.KillSwitch {
		t.Errorf("kill_switch: false in a later layer: %v, err %v", l.KillSwitch, err)
	}
}
