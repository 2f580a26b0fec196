package broker

import "time"

// Timings is told how long set-ups took, for latency metrics: an SSH
// connection that came up (TCP, proxy or jump, key exchange and login,
// with any time a prompt waited for the user), and a channel the server
// opened. Profile is the profile's name, also for a host-from-application
// server's connections. The calls are made on the connecting and dialling
// goroutines, so they must not block (metrics.Timings only adds to
// histograms).
type Timings interface {
	Handshake(profile string, d time.Duration)
	ChannelOpened(profile string, d time.Duration)
}

// handshakeTook reports a connection of l's profile that came up after d.
func (l *link) handshakeTook(d time.Duration) {
	if t := l.pool.b.opts.Timings; t != nil {
		t.Handshake(l.pool.name, d)
	}
}

// channelOpenTook reports a channel of l's profile opened after d.
func (l *link) channelOpenTook(d time.Duration) {
	if t := l.pool.b.opts.Timings; t != nil {
		t.ChannelOpened(l.pool.name, d)
	}
}
