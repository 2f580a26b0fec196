package demo

import (
	"errors"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/state"
)

func TestExplain(t *testing.T) {
	tunnel := []state.Event{
		{Event: state.EventOpen, Flow: &state.Flow{Dst: "198.18.1.2:80"}},
		{Event: state.EventClose, Flow: &state.Flow{Dst: "198.18.1.2:80", Rule: `#2 "internal"`, Action: "tunnel", Profile: "gateway", Server: "198.18.0.1:22", Sent: 100, Received: 8 << 20}},
		{Event: state.EventClose, Flow: &state.Flow{Dst: "198.18.1.2:23", Rule: `#1 "no-telnet"`, Action: "block"}, Reason: "blocked"},
	}
	for _, tc := range []struct {
		step Step
		want []string
		ok   bool
	}{
		{Step{Name: "download", Dst: "198.18.1.2:80", Detail: "8.0 MiB, sha256 matched"}, []string{`rule #2 "internal"`, `profile "gateway"`, "198.18.0.1:22", "8.0 MiB received"}, true},
		{Step{Name: "blocked", Dst: "198.18.1.2:23", WantRefused: true, Err: errors.New("dial tcp 198.18.1.2:23: connect: connection refused")}, []string{`rule #1 "no-telnet"`, "action is block", `"connection refused"`}, true},
		{Step{Name: "blocked", Dst: "198.18.1.2:23", WantRefused: true}, []string{"block"}, false},
		{Step{Name: "mail", Dst: "198.18.1.2:25", Err: errors.New("timeout")}, []string{"no flow", "timeout"}, false},
	} {
		got := Explain(tc.step, FindFlow(tunnel, tc.step.Dst))
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("Explain(%s) = %q, want it to contain %q", tc.step.Name, got, w)
			}
		}
		if tc.step.OK() != tc.ok {
			t.Errorf("%s: OK() = %v, want %v", tc.step.Name, tc.step.OK(), tc.ok)
		}
	}
}
