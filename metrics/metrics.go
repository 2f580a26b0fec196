// Package metrics serves a running shunt's counters to Prometheus: flows by
// rule, action and profile, their bytes, the SSH connections by profile and
// state, reconnects, events dropped, and how long SSH handshakes and
// channel opens take.
//
// Nothing is counted twice and the data path pays nothing for it: the
// collector reads the totals the router and the broker keep anyway, at
// scrape time, through the small interfaces below (the engine adapts its
// parts to them). Only the two latency histograms are fed as things
// happen, by the broker's Timings hook, once per SSH connection and once
// per channel open, never per byte.
//
// Labels stay bounded: rules are named by their label (`#2 "mail"`),
// profiles by their configured name (a host-from-application server's
// connections count under their profile), never by an address.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shunt-dev/shunt/state"
)

// FlowTotals are the flows of one rule, action and profile since shunt
// started, and their bytes (router.Counter, as plain data).
type FlowTotals struct {
	// Rule is the rule's label, "" for flows that no rule matched.
	Rule string
	// Action is tunnel, direct or block.
	Action string
	// Profile carries the flows; "" unless they are tunnelled.
	Profile string
	// Opened, Refused and Closed count flows set up, refused before they
	// were, and ended after they were.
	Opened, Refused, Closed int64
	// Sent counts bytes from the applications, Received bytes to them,
	// of running flows too.
	Sent, Received int64
}

// Connection is one SSH connection of a profile (broker.Connection, as
// plain data).
type Connection struct {
	// Profile is the profile's name, also for the connections to a
	// host-from-application server.
	Profile string
	// State is one of state.Idle, Connecting, Connected, Backoff and
	// WaitingForAuth.
	State string
	// Channels open on it.
	Channels int
}

// Flows gives the flow totals (the router's).
type Flows interface {
	FlowTotals() []FlowTotals
}

// Connections gives every SSH connection (the broker's).
type Connections interface {
	SSHConnections() []Connection
}

// Profiles gives the profiles' status, for their reconnects: a profile's
// own, then its host-from-application servers' (Via set), as
// broker.Broker.Status does.
type Profiles interface {
	Status() []state.Profile
}

// Events gives the events lost by slow listeners (events.Bus).
type Events interface {
	Dropped() uint64
}

// DNS gives split DNS's counters; nil from DNSStatus when it does not run.
type DNS interface {
	DNSStatus() *state.DNS
}

// FlowMemory is the budget for the flows' buffered data and what the
// latest sweep found (router.MemoryUse, as plain data).
type FlowMemory struct {
	// Budget is flow_memory; Buffered the estimate of what the open flows
	// hold; Stalled the flows whose applications (or far sides) stopped
	// reading; Reset the flows reset over the budget since shunt started.
	Budget, Buffered int64
	Stalled          int
	Reset            int64
}

// Memory gives the flow memory figures (the engine's sweeps).
type Memory interface {
	FlowMemory() FlowMemory
}

// Sources are what a Collector reads at each scrape. A nil source is
// left out of the metrics.
type Sources struct {
	Flows       Flows
	Connections Connections
	Profiles    Profiles
	Events      Events
	// Timings are the latency histograms the broker feeds.
	Timings *Timings
	DNS     DNS
	Memory  Memory
}

// States are the connection states, in the order they are exported; every
// profile gets a series for each, so a state that empties goes to 0.
var states = [...]string{state.Idle, state.Connecting, state.WaitingForAuth, state.Connected, state.Backoff}

var (
	flowLabels = []string{"rule", "action", "profile"}

	descDNSQueries = prometheus.NewDesc("shunt_dns_queries_total",
		"DNS queries shunt's DNS server answered, by outcome: fake (a fake address), forwarded (by an upstream), through (by a resolver on the far side), failed (SERVFAIL), refused, malformed.", []string{"outcome"}, nil)
	descDNSNXDomain = prometheus.NewDesc("shunt_dns_nxdomain_total",
		"DNS answers that said the name does not exist, of any outcome.", nil, nil)
	descDNSNames = prometheus.NewDesc("shunt_dns_fake_names",
		"Names holding a fake address.", nil, nil)

	descOpened = prometheus.NewDesc("shunt_flows_opened_total",
		"Flows set up (their upstream connected), by rule, action and profile.", flowLabels, nil)
	descRefused = prometheus.NewDesc("shunt_flows_refused_total",
		"Flows refused before they were set up (blocked, over the limits, upstream failed), by rule, action and profile.", flowLabels, nil)
	descClosed = prometheus.NewDesc("shunt_flows_closed_total",
		"Flows ended after they were set up, by rule, action and profile.", flowLabels, nil)
	descActive = prometheus.NewDesc("shunt_flows_active",
		"Flows set up and not ended yet, by rule, action and profile.", flowLabels, nil)
	descBytes = prometheus.NewDesc("shunt_flow_bytes_total",
		"Bytes carried by flows, running ones too: direction sent is from the applications, received to them.",
		append(flowLabels[:3:3], "direction"), nil)
	descConns = prometheus.NewDesc("shunt_ssh_connections",
		"SSH connections of each profile (its own and its host-from-application servers') in each state.",
		[]string{"profile", "state"}, nil)
	descChannels = prometheus.NewDesc("shunt_ssh_channels",
		"Channels (tunnelled flows) open on the profile's SSH connections.", []string{"profile"}, nil)
	descReconnects = prometheus.NewDesc("shunt_ssh_reconnects_total",
		"SSH connections made again after one was lost (not after an idle close).", []string{"profile"}, nil)
	descMemBudget = prometheus.NewDesc("shunt_flow_memory_budget_bytes",
		"The budget for data that flows hold buffered in shunt (flow_memory).", nil, nil)
	descMemBuffered = prometheus.NewDesc("shunt_flow_memory_buffered_bytes",
		"An upper estimate of the data the open flows hold buffered (SSH windows, the stack's queues, the splice's chunks).", nil, nil)
	descMemStalled = prometheus.NewDesc("shunt_flows_stalled",
		"Open flows whose application (or far side) has stopped reading: their buffers are cut until they drain.", nil, nil)
	descMemReset = prometheus.NewDesc("shunt_flows_memory_reset_total",
		"Flows reset because the buffered data was over the budget, the ones stalled longest first.", nil, nil)
	descDropped = prometheus.NewDesc("shunt_events_dropped_total",
		"Events lost by listeners that did not keep up (flows --follow, ...).", nil, nil)
)

// Collector is a prometheus.Collector of a running shunt's metrics.
type Collector struct {
	src Sources

	// reconnects keeps the reconnect counters monotonic although a
	// host-from-application server's connections are forgotten once
	// unused: what a forgotten one counted stays in its profile's total.
	mu         sync.Mutex
	reconnects map[string]*reconnects
}

// reconnects are one profile's: retired counts those of forgotten
// servers, seen the last count of each server ("" for the profile's own).
type reconnects struct {
	retired int64
	seen    map[string]int64
}

// NewCollector returns a collector of src.
func NewCollector(src Sources) *Collector {
	return &Collector{src: src, reconnects: map[string]*reconnects{}}
}

var _ prometheus.Collector = (*Collector)(nil)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.src.Flows != nil {
		for _, d := range []*prometheus.Desc{descOpened, descRefused, descClosed, descActive, descBytes} {
			ch <- d
		}
	}
	if c.src.Connections != nil {
		ch <- descConns
		ch <- descChannels
	}
	if c.src.Profiles != nil {
		ch <- descReconnects
	}
	if c.src.Events != nil {
		ch <- descDropped
	}
	if c.src.Timings != nil {
		c.src.Timings.describe(ch)
	}
	if c.src.DNS != nil {
		ch <- descDNSQueries
		ch <- descDNSNXDomain
		ch <- descDNSNames
	}
	if c.src.Memory != nil {
		for _, d := range []*prometheus.Desc{descMemBudget, descMemBuffered, descMemStalled, descMemReset} {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector: it reads each source once.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	if c.src.Flows != nil {
		for _, f := range c.src.Flows.FlowTotals() {
			counter(descOpened, f.Opened, f.Rule, f.Action, f.Profile)
			counter(descRefused, f.Refused, f.Rule, f.Action, f.Profile)
			counter(descClosed, f.Closed, f.Rule, f.Action, f.Profile)
			gauge(descActive, f.Opened-f.Closed, f.Rule, f.Action, f.Profile)
			counter(descBytes, f.Sent, f.Rule, f.Action, f.Profile, "sent")
			counter(descBytes, f.Received, f.Rule, f.Action, f.Profile, "received")
		}
	}
	if c.src.Connections != nil {
		type perProfile struct {
			states   [len(states)]int64
			channels int64
		}
		by := map[string]*perProfile{}
		var order []string
		for _, conn := range c.src.Connections.SSHConnections() {
			p := by[conn.Profile]
			if p == nil {
				p = &perProfile{}
				by[conn.Profile] = p
				order = append(order, conn.Profile)
			}
			for i, s := range states {
				if s == conn.State {
					p.states[i]++
				}
			}
			p.channels += int64(conn.Channels)
		}
		for _, name := range order {
			p := by[name]
			for i, s := range states {
				gauge(descConns, p.states[i], name, s)
			}
			gauge(descChannels, p.channels, name)
		}
	}
	if c.src.Profiles != nil {
		for name, n := range c.reconnectTotals(c.src.Profiles.Status()) {
			counter(descReconnects, n, name)
		}
	}
	if c.src.Events != nil {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(c.src.Events.Dropped()))
	}
	if c.src.Timings != nil {
		c.src.Timings.collect(ch)
	}
	if c.src.Memory != nil {
		m := c.src.Memory.FlowMemory()
		gauge(descMemBudget, m.Budget)
		gauge(descMemBuffered, m.Buffered)
		gauge(descMemStalled, int64(m.Stalled))
		counter(descMemReset, m.Reset)
	}
	if c.src.DNS != nil {
		if d := c.src.DNS.DNSStatus(); d != nil {
			q := d.Queries
			for _, o := range []struct {
				outcome string
				n       uint64
			}{{"fake", q.Fake}, {"forwarded", q.Forwarded}, {"through", q.Through}, {"failed", q.Failed}, {"refused", q.Refused}, {"malformed", q.Malformed}} {
				ch <- prometheus.MustNewConstMetric(descDNSQueries, prometheus.CounterValue, float64(o.n), o.outcome)
			}
			ch <- prometheus.MustNewConstMetric(descDNSNXDomain, prometheus.CounterValue, float64(q.NXDomain))
			gauge(descDNSNames, int64(d.Names))
		}
	}
}

// reconnectTotals sums the reconnects of each profile's connections, its
// own and its host-from-application servers', counting on from what
// servers since forgotten (or forgotten and made again) had counted.
func (c *Collector) reconnectTotals(status []state.Profile) map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := map[string]map[string]int64{}
	for _, p := range status {
		if now[p.Name] == nil {
			now[p.Name] = map[string]int64{}
		}
		now[p.Name][p.Via] += int64(p.Reconnects)
	}
	for name, r := range c.reconnects {
		for via, last := range r.seen {
			if n, ok := now[name][via]; !ok || n < last {
				r.retired += last // forgotten, or forgotten and made anew
			}
		}
	}
	out := make(map[string]int64, len(now))
	for name, vias := range now {
		r := c.reconnects[name]
		if r == nil {
			r = &reconnects{}
			c.reconnects[name] = r
		}
		r.seen = vias
		total := r.retired
		for _, n := range vias {
			total += n
		}
		out[name] = total
	}
	return out
}

// Timings are the latency histograms: SSH handshakes and channel opens,
// by profile. They implement broker.Timings; observing is a few atomic
// adds, and never blocks.
type Timings struct {
	handshake, channelOpen *prometheus.HistogramVec
}

// NewTimings returns empty histograms, with a series for each of
// profiles already (so that they are scraped before their first use).
func NewTimings(profiles ...string) *Timings {
	t := &Timings{
		handshake: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shunt_ssh_handshake_duration_seconds",
			Help: "Time to set up an SSH connection that came up: TCP (or proxy, or jump) connect, key exchange and login, including time a prompt waited for the user.",
			// 5 ms to ~41 s.
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"profile"}),
		channelOpen: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shunt_ssh_channel_open_duration_seconds",
			Help: "Time the SSH server took to open a flow's channel (it connects to the destination meanwhile), for channels it opened.",
			// 1 ms to ~16 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"profile"}),
	}
	for _, p := range profiles {
		t.handshake.WithLabelValues(p)
		t.channelOpen.WithLabelValues(p)
	}
	return t
}

// Handshake records an SSH connection of profile that came up after d.
func (t *Timings) Handshake(profile string, d time.Duration) {
	t.handshake.WithLabelValues(profile).Observe(d.Seconds())
}

// ChannelOpened records a channel of profile that the server opened after d.
func (t *Timings) ChannelOpened(profile string, d time.Duration) {
	t.channelOpen.WithLabelValues(profile).Observe(d.Seconds())
}

func (t *Timings) describe(ch chan<- *prometheus.Desc) {
	t.handshake.Describe(ch)
	t.channelOpen.Describe(ch)
}

func (t *Timings) collect(ch chan<- prometheus.Metric) {
	t.handshake.Collect(ch)
	t.channelOpen.Collect(ch)
}
