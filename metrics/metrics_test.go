package metrics_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/state"
)

// fakes hands the collector what a test sets.
type fakes struct {
	mu       sync.Mutex
	flows    []metrics.FlowTotals
	conns    []metrics.Connection
	profiles []state.Profile
	dropped  uint64
}

func (f *fakes) FlowTotals() []metrics.FlowTotals {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flows
}

func (f *fakes) SSHConnections() []metrics.Connection {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fakes) Status() []state.Profile {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.profiles
}

func (f *fakes) Dropped() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

func (f *fakes) sources() metrics.Sources {
	return metrics.Sources{Flows: f, Connections: f, Profiles: f, Events: f}
}

func compare(t *testing.T, c *metrics.Collector, want string, names ...string) {
	t.Helper()
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// Each source's numbers come out under their names and labels: flows by
// rule, action and profile, SSH connections by profile and state (a
// host-from-application server's under its profile), events dropped.
func TestCollector(t *testing.T) {
	f := &fakes{
		flows: []metrics.FlowTotals{
			{Rule: "", Action: "direct", Opened: 3, Closed: 2, Sent: 100, Received: 2000},
			{Rule: `#1 "no-telnet"`, Action: "block", Refused: 4},
			{Rule: `#2 "internal"`, Action: "tunnel", Profile: "gw", Opened: 5, Refused: 1, Closed: 5, Sent: 1 << 20, Received: 3 << 20},
		},
		conns: []metrics.Connection{
			{Profile: "gw", State: state.Connected, Channels: 2},
			{Profile: "gw", State: state.Connecting},
			{Profile: "gw", State: state.Connected, Channels: 1}, // a host-from-application server's
			{Profile: "bastion", State: state.Backoff},
		},
		profiles: []state.Profile{
			{Name: "gw", Reconnects: 2},
			{Name: "bastion"},
			{Name: "gw", Via: "10.1.0.7", Reconnects: 1},
		},
		dropped: 7,
	}
	c := metrics.NewCollector(f.sources())
	compare(t, c, `
# HELP shunt_flows_opened_total Flows set up (their upstream connected), by rule, action and profile.
# TYPE shunt_flows_opened_total counter
shunt_flows_opened_total{action="direct",profile="",rule=""} 3
shunt_flows_opened_total{action="block",profile="",rule="#1 \"no-telnet\""} 0
shunt_flows_opened_total{action="tunnel",profile="gw",rule="#2 \"internal\""} 5
# HELP shunt_flows_refused_total Flows refused before they were set up (blocked, over the limits, upstream failed), by rule, action and profile.
# TYPE shunt_flows_refused_total counter
shunt_flows_refused_total{action="direct",profile="",rule=""} 0
shunt_flows_refused_total{action="block",profile="",rule="#1 \"no-telnet\""} 4
shunt_flows_refused_total{action="tunnel",profile="gw",rule="#2 \"internal\""} 1
# HELP shunt_flows_closed_total Flows ended after they were set up, by rule, action and profile.
# TYPE shunt_flows_closed_total counter
shunt_flows_closed_total{action="direct",profile="",rule=""} 2
shunt_flows_closed_total{action="block",profile="",rule="#1 \"no-telnet\""} 0
shunt_flows_closed_total{action="tunnel",profile="gw",rule="#2 \"internal\""} 5
# HELP shunt_flows_active Flows set up and not ended yet, by rule, action and profile.
# TYPE shunt_flows_active gauge
shunt_flows_active{action="direct",profile="",rule=""} 1
shunt_flows_active{action="block",profile="",rule="#1 \"no-telnet\""} 0
shunt_flows_active{action="tunnel",profile="gw",rule="#2 \"internal\""} 0
# HELP shunt_flow_bytes_total Bytes carried by flows, running ones too: direction sent is from the applications, received to them.
# TYPE shunt_flow_bytes_total counter
shunt_flow_bytes_total{action="direct",direction="received",profile="",rule=""} 2000
shunt_flow_bytes_total{action="direct",direction="sent",profile="",rule=""} 100
shunt_flow_bytes_total{action="block",direction="received",profile="",rule="#1 \"no-telnet\""} 0
shunt_flow_bytes_total{action="block",direction="sent",profile="",rule="#1 \"no-telnet\""} 0
shunt_flow_bytes_total{action="tunnel",direction="received",profile="gw",rule="#2 \"internal\""} 3.145728e+06
shunt_flow_bytes_total{action="tunnel",direction="sent",profile="gw",rule="#2 \"internal\""} 1.048576e+06
# HELP shunt_ssh_connections SSH connections of each profile (its own and its host-from-application servers') in each state.
# TYPE shunt_ssh_connections gauge
shunt_ssh_connections{profile="bastion",state="backoff"} 1
shunt_ssh_connections{profile="bastion",state="connected"} 0
shunt_ssh_connections{profile="bastion",state="connecting"} 0
shunt_ssh_connections{profile="bastion",state="idle"} 0
shunt_ssh_connections{profile="bastion",state="waiting-for-auth"} 0
shunt_ssh_connections{profile="gw",state="backoff"} 0
shunt_ssh_connections{profile="gw",state="connected"} 2
shunt_ssh_connections{profile="gw",state="connecting"} 1
shunt_ssh_connections{profile="gw",state="idle"} 0
shunt_ssh_connections{profile="gw",state="waiting-for-auth"} 0
# HELP shunt_ssh_channels Channels (tunnelled flows) open on the profile's SSH connections.
# TYPE shunt_ssh_channels gauge
shunt_ssh_channels{profile="bastion"} 0
shunt_ssh_channels{profile="gw"} 3
# HELP shunt_ssh_reconnects_total SSH connections made again after one was lost (not after an idle close).
# TYPE shunt_ssh_reconnects_total counter
shunt_ssh_reconnects_total{profile="bastion"} 0
shunt_ssh_reconnects_total{profile="gw"} 3
# HELP shunt_events_dropped_total Events lost by listeners that did not keep up (flows --follow, ...).
# TYPE shunt_events_dropped_total counter
shunt_events_dropped_total 7
`)
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// A host-from-application server's connections are forgotten once
// unused: the reconnects they counted stay in their profile's total, which
// never goes down, also when the server is connected to anew.
func TestReconnectsNeverGoDown(t *testing.T) {
	f := &fakes{profiles: []state.Profile{{Name: "gw", Reconnects: 1}, {Name: "gw", Via: "10.1.0.7", Reconnects: 2}}}
	c := metrics.NewCollector(metrics.Sources{Profiles: f})
	want := func(n string) string {
		return "# HELP shunt_ssh_reconnects_total SSH connections made again after one was lost (not after an idle close).\n" +
			"# TYPE shunt_ssh_reconnects_total counter\n" +
			`shunt_ssh_reconnects_total{profile="gw"} ` + n + "\n"
	}
	compare(t, c, want("3"))
	f.mu.Lock()
	f.profiles = []state.Profile{{Name: "gw", Reconnects: 1}} // 10.1.0.7 forgotten
	f.mu.Unlock()
	compare(t, c, want("3"))
	f.mu.Lock()
	f.profiles = []state.Profile{{Name: "gw", Reconnects: 2}, {Name: "gw", Via: "10.1.0.7", Reconnects: 1}} // made anew
	f.mu.Unlock()
	compare(t, c, want("5"))
	f.mu.Lock()
	f.profiles = []state.Profile{{Name: "gw", Reconnects: 2}, {Name: "gw", Via: "10.1.0.7", Reconnects: 0}} // forgotten and made anew again
	f.mu.Unlock()
	compare(t, c, want("5"))
}

// Sources left nil are left out; the histograms have a series for each
// profile named before any observation, and count what they are told.
func TestTimings(t *testing.T) {
	tm := metrics.NewTimings("gw")
	c := metrics.NewCollector(metrics.Sources{Timings: tm})
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("%d series before any observation, want 2 (a histogram of each kind for gw)", n)
	}
	tm.Handshake("gw", 30*time.Millisecond)
	tm.ChannelOpened("gw", 3*time.Millisecond)
	tm.ChannelOpened("other", 3*time.Second)
	compare(t, c, `
# HELP shunt_ssh_channel_open_duration_seconds Time the SSH server took to open a flow's channel (it connects to the destination meanwhile), for channels it opened.
# TYPE shunt_ssh_channel_open_duration_seconds histogram
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.001"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.002"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.004"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.008"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.016"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.032"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.064"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.128"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.256"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="0.512"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="1.024"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="2.048"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="4.096"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="8.192"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="16.384"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="gw",le="+Inf"} 1
shunt_ssh_channel_open_duration_seconds_sum{profile="gw"} 0.003
shunt_ssh_channel_open_duration_seconds_count{profile="gw"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.001"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.002"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.004"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.008"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.016"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.032"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.064"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.128"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.256"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="0.512"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="1.024"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="2.048"} 0
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="4.096"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="8.192"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="16.384"} 1
shunt_ssh_channel_open_duration_seconds_bucket{profile="other",le="+Inf"} 1
shunt_ssh_channel_open_duration_seconds_sum{profile="other"} 3
shunt_ssh_channel_open_duration_seconds_count{profile="other"} 1
`, "shunt_ssh_channel_open_duration_seconds")
	if got := testutil.CollectAndCount(c, "shunt_ssh_handshake_duration_seconds"); got != 1 {
		t.Errorf("%d handshake series, want 1", got)
	}
	if n := testutil.CollectAndCount(c, "shunt_flows_opened_total", "shunt_ssh_connections", "shunt_events_dropped_total"); n != 0 {
		t.Errorf("%d series of sources left nil", n)
	}
}

type dnsFake struct{ st *state.DNS }

func (d dnsFake) DNSStatus() *state.DNS { return d.st }

// Split DNS's counters come out by outcome, and nothing while it does not
// run.
func TestDNSMetrics(t *testing.T) {
	c := metrics.NewCollector(metrics.Sources{DNS: dnsFake{&state.DNS{Names: 3, Queries: state.DNSQueries{Fake: 10, Forwarded: 20, Through: 2, Failed: 1, NXDomain: 4}}}})
	compare(t, c, `
# HELP shunt_dns_queries_total DNS queries shunt's DNS server answered, by outcome: fake (a fake address), forwarded (by an upstream), through (by a resolver on the far side), failed (SERVFAIL), refused, malformed.
# TYPE shunt_dns_queries_total counter
shunt_dns_queries_total{outcome="failed"} 1
shunt_dns_queries_total{outcome="fake"} 10
shunt_dns_queries_total{outcome="forwarded"} 20
shunt_dns_queries_total{outcome="malformed"} 0
shunt_dns_queries_total{outcome="refused"} 0
shunt_dns_queries_total{outcome="through"} 2
# HELP shunt_dns_nxdomain_total DNS answers that said the name does not exist, of any outcome.
# TYPE shunt_dns_nxdomain_total counter
shunt_dns_nxdomain_total 4
# HELP shunt_dns_fake_names Names holding a fake address.
# TYPE shunt_dns_fake_names gauge
shunt_dns_fake_names 3
`)
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if n := testutil.CollectAndCount(metrics.NewCollector(metrics.Sources{DNS: dnsFake{}})); n != 0 {
		t.Errorf("%d series without split DNS, want none", n)
	}
}
