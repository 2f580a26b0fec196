package engine

import (
	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/events"
	"github.com/shunt-dev/shunt/metrics"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/state"
)

// Metrics returns a Prometheus collector of the engine's totals: its
// router's flows, its broker's connections, its event bus's drops, and
// the latency histograms its broker feeds. It reads them at each scrape
// and counts nothing itself; serve it with metrics.Listen.
func (e *Engine) Metrics() *metrics.Collector {
	return metrics.NewCollector(metrics.Sources{
		Flows:       routerTotals{e.router},
		Connections: brokerConnections{e.broker},
		Profiles:    e.broker,
		Events:      &e.live.bus,
		Timings:     e.timings,
		DNS:         dnsSource{e},
		Memory:      memorySource{e.memory},
	})
}

// dnsSource gives the metrics split DNS's counters.
type dnsSource struct{ e *Engine }

func (s dnsSource) DNSStatus() *state.DNS { return s.e.dnsStatus() }

// newTimings are the latency histograms of the broker's profiles.
func newTimings(profiles []broker.Profile) *metrics.Timings {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return metrics.NewTimings(names...)
}

// routerTotals gives the metrics the router's counters.
type routerTotals struct{ r *router.Router }

func (a routerTotals) FlowTotals() []metrics.FlowTotals {
	cs := a.r.Counters()
	out := make([]metrics.FlowTotals, len(cs))
	for i, c := range cs {
		out[i] = metrics.FlowTotals{
			Rule: c.Rule, Action: c.Action.String(), Profile: c.Profile,
			Opened: c.Opened, Refused: c.Refused, Closed: c.Closed,
			Sent: c.Sent, Received: c.Received,
		}
	}
	return out
}

// brokerConnections gives the metrics the broker's connections.
type brokerConnections struct{ b *broker.Broker }

func (a brokerConnections) SSHConnections() []metrics.Connection {
	cs := a.b.Connections()
	out := make([]metrics.Connection, len(cs))
	for i, c := range cs {
		out[i] = metrics.Connection{Profile: c.Profile, State: c.State, Channels: c.Channels}
	}
	return out
}

var (
	_ metrics.Flows       = routerTotals{}
	_ metrics.Connections = brokerConnections{}
	_ metrics.Profiles    = (*broker.Broker)(nil)
	_ metrics.Events      = (*events.Bus)(nil)
	_ broker.Timings      = (*metrics.Timings)(nil)
)
