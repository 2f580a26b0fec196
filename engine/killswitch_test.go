package engine_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/router"
)

// Explain says what happens when the tunnel is down and while shunt is
// stopped; the kill switch exempts the SSH servers.
func TestExplainTunnelDownAndStopped(t *testing.T) {
	for _, tt := range []struct {
		name, extra, rule string
		dst               string
		wantDown, wantOff string
	}{
		{"defaults", "", "", "10.1.2.3:80", "on_tunnel_down: block, the default", "kill_switch is off"},
		{"direct and kill switch", "kill_switch: true\n", "    on_tunnel_down: direct\n", "10.1.2.3:80", "in the clear", "the destination is unreachable"},
		{"the SSH server", "kill_switch: true\n", "", "10.9.9.9:22", "on_tunnel_down: block", "the SSH server or proxy 10.9.9.9"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parse(t, tt.extra+"profiles:\n  - name: p\n    host: 10.9.9.9\nrules:\n  - destinations: [10.0.0.0/8]\n    action: tunnel\n    profile: p\n"+tt.rule)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := engine.Convert(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ex := plan.Explain(router.Flow{Dst: netip.MustParseAddrPort(tt.dst)}, nil)
			if !strings.Contains(ex.TunnelDown, tt.wantDown) {
				t.Errorf("TunnelDown %q, want it to contain %q", ex.TunnelDown, tt.wantDown)
			}
			if !strings.Contains(ex.Stopped, tt.wantOff) {
				t.Errorf("Stopped %q, want it to contain %q", ex.Stopped, tt.wantOff)
			}
		})
	}
}
