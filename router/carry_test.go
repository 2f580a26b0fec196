package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/router/routertest"
)

// uidOwners owns each flow by its source port: port 1000+uid is uid's
// (exe /usr/bin/curl), any other port's socket cannot be found. It counts
// the lookups of both kinds, and those of the user alone.
type uidOwners struct{ lookups, uidLookups atomic.Int64 }

func (o *uidOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	o.lookups.Add(1)
	if p := src.Port(); p >= 1000 && p < 3000 {
		return Owner{UID: uint32(p - 1000), Exe: "/usr/bin/curl", Name: "curl"}, nil
	}
	return Owner{}, errors.New("no socket")
}

func (o *uidOwners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	o.uidLookups.Add(1)
	ow, err := o.Lookup(ctx, src, dst)
	return ow.UID, err
}

// A tunnel rule carries only the flows of its profile's allowed users: a
// flow of another user, or of one that cannot be found, is refused before
// any dial, logged with its uid, application, profile and the fix, and
// counted as refused. A rule's own users widen it; direct and blocked
// flows are not looked up at all.
func TestCarriesOnlyAllowedUsers(t *testing.T) {
	rules := []Rule{
		{Name: "ops", Destinations: pfx("10.9.0.0/24"), Users: []uint32{1001}, Action: Tunnel, Profile: "corp", AllowedUsers: []uint32{1000}},
		{Name: "corp", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "corp", AllowedUsers: []uint32{1000}},
		{Name: "open", Destinations: pfx("10.2.0.0/24"), Action: Tunnel, Profile: "shared"}, // allowed_users: any
		{Name: "blocked", Destinations: pfx("10.3.0.0/24"), Action: Block},
	}
	tests := []struct {
		name     string
		srcPort  uint16
		dst      string
		wantDial string // "" none: refused
		wantLog  []string
		lookups  int64
	}{
		{name: "the allowed user", srcPort: 2000, dst: "10.1.0.5:25", wantDial: "corp/10.1.0.5:25", lookups: 1},
		// The user first, then the application for the log line.
		{name: "another user", srcPort: 2001, dst: "10.1.0.5:25", lookups: 2,
			wantLog: []string{`flow refused: profile "corp" carries only the flows of its allowed_users (uids [1000]), and this flow is uid 1001's`, "add 1001 to the profile's allowed_users"}},
		{name: "root is another user too", srcPort: 1000, dst: "10.1.0.5:25", lookups: 2, wantLog: []string{"this flow is uid 0's"}},
		{name: "a user not found", srcPort: 5000, dst: "10.1.0.5:25", lookups: 1,
			wantLog: []string{"this flow's user cannot be found; allowed_users: any lets every user's flows"}},
		{name: "a rule's users widen it", srcPort: 2001, dst: "10.9.0.5:25", wantDial: "corp/10.9.0.5:25", lookups: 1},
		{name: "allowed_users any: no lookup", srcPort: 5000, dst: "10.2.0.5:25", wantDial: "shared/10.2.0.5:25"},
		{name: "direct: no lookup", srcPort: 2001, dst: "10.4.0.5:80", wantDial: "direct/10.4.0.5:80"},
		{name: "blocked: no lookup", srcPort: 2001, dst: "10.3.0.5:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The ops rule names users, so its decisions look owners up
			// first; without it, only tunnel flows are looked up.
			rs := rules
			if !strings.HasPrefix(tt.dst, "10.9.") {
				rs = rules[1:]
			}
			f := &routertest.Dialer{}
			owners := &uidOwners{}
			log, hook := test.NewNullLogger()
			r := New(rs, Options{Tunnels: f, Direct: f, Owners: owners, Log: log})
			accepted := false
			src := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), tt.srcPort)
			r.HandleTCP(context.Background(), src, netip.MustParseAddrPort(tt.dst), "", func() (net.Conn, error) {
				accepted = true
				a, b := net.Pipe()
				a.Close()
				return b, nil
			})
			r.Wait()
			dials := f.Dials()
			if tt.wantDial == "" && (len(dials) > 0 || accepted) {
				t.Errorf("dialed %v, accepted %v: want the flow refused", dials, accepted)
			}
			if tt.wantDial != "" && (len(dials) != 1 || dials[0] != tt.wantDial || !accepted) {
				t.Errorf("dialed %v, accepted %v; want %s", dials, accepted, tt.wantDial)
			}
			if n := owners.lookups.Load(); n != tt.lookups {
				t.Errorf("%d owner lookups, want %d", n, tt.lookups)
			}
			if len(tt.wantLog) == 0 {
				return
			}
			e := hook.LastEntry()
			for _, w := range tt.wantLog {
				if !strings.Contains(e.Message, w) {
					t.Errorf("logged %q, want it to contain %q", e.Message, w)
				}
			}
			if e.Level != logrus.WarnLevel || e.Data["profile"] != "corp" {
				t.Errorf("logged at %v with %v: want a warning naming the profile", e.Level, e.Data)
			}
			if tt.srcPort < 3000 && (e.Data["uid"] != uint32(tt.srcPort-1000) || e.Data["app"] != "/usr/bin/curl") {
				t.Errorf("logged %v: want the uid and the application", e.Data)
			}
			if tt.srcPort >= 3000 && e.Data["owner_error"] != "no socket" {
				t.Errorf("logged %v: want the lookup's error", e.Data)
			}
			var refused int64
			for _, c := range r.Counters() {
				refused += c.Refused
			}
			if refused != 1 {
				t.Errorf("counters %+v: want the flow counted as refused", r.Counters())
			}
		})
	}
}

// Carries, the pure part: every case of owner and rule.
func TestRuleCarries(t *testing.T) {
	alice, bob := &Owner{UID: 1000}, &Owner{UID: 1001}
	unknown := &Owner{Exe: "/usr/bin/curl", NoUID: true}
	tests := []struct {
		rule Rule
		o    *Owner
		want bool
	}{
		{Rule{Action: Tunnel, AllowedUsers: []uint32{1000}}, alice, true},
		{Rule{Action: Tunnel, AllowedUsers: []uint32{1000}}, bob, false},
		{Rule{Action: Tunnel, AllowedUsers: []uint32{1000}}, nil, false},
		{Rule{Action: Tunnel, AllowedUsers: []uint32{1000}}, unknown, false},
		{Rule{Action: Tunnel, AllowedUsers: []uint32{1000}, Users: []uint32{1001}}, bob, true},
		{Rule{Action: Tunnel}, nil, true},
		{Rule{Action: Direct, AllowedUsers: []uint32{1000}}, nil, true},
	}
	for i, tt := range tests {
		if got := tt.rule.Carries(tt.o); got != tt.want {
			t.Errorf("#%d: %+v carries %+v: %v, want %v", i, tt.rule, tt.o, got, tt.want)
		}
	}
	if rs := Compile([]Rule{{Action: Tunnel, Profile: "p", AllowedUsers: []uint32{1000}}}); !rs.NeedsOwner() {
		t.Error("a tunnel rule that checks users needs the owner lookup")
	}
	if rs := Compile([]Rule{{Action: Tunnel, Profile: "p"}, {Action: Direct, AllowedUsers: []uint32{1}}}); rs.NeedsOwner() {
		t.Error("no rule checks users: no owner lookup needed")
	}
}

// The allowed_users check asks only for the user where the lookup can
// find it alone (no process, no /proc); a refused flow is looked up whole,
// for the log line that names its application.
func TestCarriesAsksOnlyForTheUser(t *testing.T) {
	rules := []Rule{{Name: "corp", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "corp", AllowedUsers: []uint32{1000}}}
	for _, tt := range []struct {
		srcPort           uint16
		wantUID, wantFull int64
		refused           bool
	}{
		{srcPort: 2000, wantUID: 1},
		{srcPort: 2001, wantUID: 1, wantFull: 1, refused: true},
	} {
		f := &routertest.Dialer{}
		owners := &uidOwners{}
		log, _ := test.NewNullLogger()
		r := New(rules, Options{Tunnels: f, Direct: f, Owners: owners, Log: log})
		src := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), tt.srcPort)
		r.HandleTCP(context.Background(), src, netip.MustParseAddrPort("10.1.0.5:25"), "", func() (net.Conn, error) {
			a, b := net.Pipe()
			a.Close()
			return b, nil
		})
		r.Wait()
		if u, full := owners.uidLookups.Load(), owners.lookups.Load()-owners.uidLookups.Load(); u != tt.wantUID || full != tt.wantFull {
			t.Errorf("port %d: %d user lookups and %d whole ones, want %d and %d", tt.srcPort, u, full, tt.wantUID, tt.wantFull)
		}
		if refused := len(f.Dials()) == 0; refused != tt.refused {
			t.Errorf("port %d: refused %v, want %v", tt.srcPort, refused, tt.refused)
		}
	}
}

// ctxOwners records the contexts its lookups were given.
type ctxOwners struct {
	mu   sync.Mutex
	ctxs []context.Context
}

func (o *ctxOwners) Lookup(ctx context.Context, src, dst netip.AddrPort) (Owner, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ctxs = append(o.ctxs, ctx)
	return Owner{UID: 1001, Exe: "/usr/bin/curl", Name: "curl"}, nil
}

func (o *ctxOwners) LookupUID(ctx context.Context, src, dst netip.AddrPort) (uint32, error) {
	ow, err := o.Lookup(ctx, src, dst)
	return ow.UID, err
}

// The lookups get the flow's context, so that a flow given up stops its
// lookup: the decision's, the allowed_users check's and the refusal's.
func TestOwnerLookupsGetTheFlowsContext(t *testing.T) {
	type key struct{}
	rules := []Rule{
		{Name: "apps", Destinations: pfx("10.2.0.0/24"), Applications: []string{"curl"}, Action: Direct},
		{Name: "corp", Destinations: pfx("10.1.0.0/24"), Action: Tunnel, Profile: "corp", AllowedUsers: []uint32{1000}},
	}
	for _, dst := range []string{"10.2.0.5:80", "10.1.0.5:25"} {
		f := &routertest.Dialer{}
		owners := &ctxOwners{}
		log, _ := test.NewNullLogger()
		r := New(rules, Options{Tunnels: f, Direct: f, Owners: owners, Log: log})
		ctx := context.WithValue(context.Background(), key{}, dst)
		r.HandleTCP(ctx, netip.MustParseAddrPort("192.0.2.1:2001"), netip.MustParseAddrPort(dst), "", func() (net.Conn, error) {
			a, b := net.Pipe()
			a.Close()
			return b, nil
		})
		r.Wait()
		owners.mu.Lock()
		if len(owners.ctxs) == 0 {
			t.Errorf("%s: no lookup", dst)
		}
		for _, c := range owners.ctxs {
			if c.Value(key{}) != dst {
				t.Errorf("%s: a lookup got another context than the flow's", dst)
			}
		}
		owners.mu.Unlock()
	}
}
