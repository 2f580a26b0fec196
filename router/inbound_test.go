package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

// destErr is an upstream error that says what became of the destination,
// as the broker's refused channel does.
type destErr struct{ refused bool }

func (e destErr) Error() string            { return fmt.Sprintf("channel refused (%v)", e.refused) }
func (e destErr) DestinationRefused() bool { return e.refused }

// pipeAccept is an accept whose client writes ping, reads it back and
// closes once release is closed.
func pipeAccept(accepted *bool, release <-chan struct{}) func() (net.Conn, error) {
	return func() (net.Conn, error) {
		*accepted = true
		a, b := net.Pipe()
		go func() {
			a.Write([]byte("ping"))
			io.ReadFull(a, make([]byte, 4))
			<-release
			a.Close()
		}()
		return b, nil
	}
}

// A listener's connection is decided by the rules (by name when the
// client gave one, never looked up), or by its own rule (a static
// tunnel); a refusal comes back with its kind, and accept is not called.
func TestHandleInbound(t *testing.T) {
	rules := []Rule{
		{Name: "blocked", Ports: []PortRange{{23, 23}}, Action: Block},
		{Name: "corp", Domains: []string{"*.corp.example"}, Action: Tunnel, Profile: "office"},
		{Name: "net", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "office"},
	}
	static := &Rule{Name: "static 127.0.0.1:1143", Action: Tunnel, Profile: "mail", Source: "shunt.yaml:9"}
	src, local := ap("127.0.0.1:40000"), ap("127.0.0.1:1080")
	name := func(host string, port uint16) Inbound {
		return Inbound{Src: src, Local: local, Dst: netip.AddrPortFrom(netip.Addr{}, port), Host: host, Via: "socks 127.0.0.1:1080"}
	}
	addr := func(dst string) Inbound {
		return Inbound{Src: src, Local: local, Dst: ap(dst), Via: "socks 127.0.0.1:1080"}
	}
	for _, tt := range []struct {
		name     string
		in       Inbound
		dialErr  error
		wantDial string
		want     RefusalKind // -1: set up
	}{
		{"name through a domain rule", name("wiki.corp.example", 443), nil, "office/wiki.corp.example:443", -1},
		{"name matching no rule goes direct, by name", name("www.example.org", 80), nil, "direct/www.example.org:80", -1},
		{"address", addr("10.1.0.7:25"), nil, "office/10.1.0.7:25", -1},
		{"blocked", addr("10.1.0.7:23"), nil, "", RefusedBlocked},
		{"channel refused", addr("10.1.0.7:25"), destErr{refused: true}, "office/10.1.0.7:25", RefusedByDestination},
		{"server cannot connect", addr("10.1.0.7:25"), destErr{refused: false}, "office/10.1.0.7:25", RefusedUnreachable},
		{"direct refused", addr("10.9.0.7:80"), &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "direct/10.9.0.7:80", RefusedByDestination},
		{"direct, no such name", name("nowhere.example", 80), &net.DNSError{Err: "no such host", Name: "nowhere.example", IsNotFound: true}, "direct/nowhere.example:80", RefusedUnreachable},
		{"other failure", addr("10.1.0.7:25"), errors.New("ssh: handshake failed"), "office/10.1.0.7:25", RefusedFailed},
		{"static tunnel ignores the rules", Inbound{Src: src, Local: ap("127.0.0.1:1143"), Dst: netip.AddrPortFrom(netip.Addr{}, 23), Host: "imap.corp.example", Via: "static 127.0.0.1:1143", Rule: static}, nil, "mail/imap.corp.example:23", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &routertest.Dialer{Fail: failing(tt.dialErr)}
			log, _ := test.NewNullLogger()
			r := New(rules, Options{Tunnels: f, Direct: f, Log: log})
			accepted := false
			release := make(chan struct{})
			err := r.HandleInbound(context.Background(), tt.in, pipeAccept(&accepted, release))
			flows := r.Flows()
			close(release)
			r.Wait()
			var dialed string
			if d := f.Dials(); len(d) > 0 {
				dialed = d[0]
			}
			if dialed != tt.wantDial {
				t.Errorf("dialed %q, want %q", dialed, tt.wantDial)
			}
			if tt.want < 0 {
				if err != nil || !accepted {
					t.Fatalf("err %v, accepted %v: want set up", err, accepted)
				}
				if len(flows) != 1 || flows[0].Via != tt.in.Via || flows[0].Dst == "invalid AddrPort" {
					t.Errorf("flow table %+v: want the flow with via %q and its destination", flows, tt.in.Via)
				}
				return
			}
			var ref *Refused
			if !errors.As(err, &ref) || ref.Kind != tt.want || accepted {
				t.Fatalf("err %v (%T), accepted %v: want a %v refusal, not accepted", err, err, accepted, tt.want)
			}
		})
	}
}
