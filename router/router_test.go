package router

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

// failing is a Fail for routertest.Dialer: every dial fails with err (none
// when err is nil).
func failing(err error) func(routertest.Call) error {
	return func(routertest.Call) error { return err }
}

func TestHandleTCP(t *testing.T) {
	rules := []Rule{
		{Name: "blocked", Ports: []PortRange{{23, 23}}, Action: Block},
		{Name: "mail", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "paper"},
	}
	tests := []struct {
		dst        string
		dialErr    error
		wantDial   string // "" means no dial
		wantAccept bool
	}{
		{"10.1.0.5:23", nil, "", false},
		{"10.1.0.5:25", nil, "paper/10.1.0.5:25", true},
		{"10.1.0.5:25", errors.New("ssh: connect failed"), "paper/10.1.0.5:25", false},
		{"10.2.0.5:80", nil, "direct/10.2.0.5:80", true},
		{"[fd00::1]:80", nil, "direct/[fd00::1]:80", true},
	}
	for _, tt := range tests {
		t.Run(tt.dst, func(t *testing.T) {
			f := &routertest.Dialer{Fail: failing(tt.dialErr)}
			log, hook := test.NewNullLogger()
			r := New(rules, Options{Tunnels: f, Direct: f, Log: log})
			accepted := false
			r.HandleTCP(context.Background(), netip.MustParseAddrPort("192.0.2.1:5000"), netip.MustParseAddrPort(tt.dst), "", func() (net.Conn, error) {
				accepted = true
				a, b := net.Pipe()
				go func() {
					a.Write([]byte("ping"))
					buf := make([]byte, 4)
					io.ReadFull(a, buf)
					a.Close()
				}()
				return b, nil
			})
			r.Wait()
			if accepted != tt.wantAccept {
				t.Errorf("accepted = %v, want %v", accepted, tt.wantAccept)
			}
			var dialed string
			if dials := f.Dials(); len(dials) > 0 {
				dialed = dials[0]
			}
			if dialed != tt.wantDial {
				t.Errorf("dialed %q, want %q", dialed, tt.wantDial)
			}
			if len(hook.AllEntries()) == 0 {
				t.Error("flow was not logged")
			}
			last := hook.LastEntry()
			if tt.wantAccept && (last.Message != "flow closed" || last.Data["sent"] != int64(4)) {
				t.Errorf("last log %q %v, want flow closed with 4 bytes sent", last.Message, last.Data)
			}
			if tt.dialErr != nil && last.Level != logrus.WarnLevel {
				t.Errorf("dial failure logged at %v", last.Level)
			}
		})
	}
}

func TestSetRulesKeepsOldSlice(t *testing.T) {
	rules := []Rule{{Action: Block}}
	r := New(rules, Options{Log: logrus.New()})
	rules[0].Action = Tunnel // the caller's slice is copied
	if r.Rules()[0].Action != Block {
		t.Fatal("router shares the caller's rule slice")
	}
	r.SetRules(nil)
	if len(r.Rules()) != 0 {
		t.Fatal("SetRules did not replace the rules")
	}
}
