package broker

import (
	"context"
	"fmt"
)

// Connect connects the profile now, as connect_on_start does at start:
// it returns once its (first) connection is up, the attempt failed, or
// ctx ended. A profile connected already returns at once; one backing
// off after a failure returns that failure.
func (b *Broker) Connect(ctx context.Context, profile string) error {
	pl, ok := b.set.Load().pools[profile]
	if !ok {
		return fmt.Errorf("no connection profile %q", profile)
	}
	if len(pl.p.Hosts) == 0 {
		return fmt.Errorf("profile %q has no host: it connects to each host-from-application server as its flows come", profile)
	}
	_, err := pl.links[0].get(ctx)
	return err
}

// Disconnect closes the profile's SSH connections, and those of its
// host-from-application servers: their flows are reset, as when a
// connection is lost. It is not a failure: no backoff, no reconnect
// counted, no last error; the next flow connects again. An attempt
// running meanwhile goes on.
func (b *Broker) Disconnect(profile string) error {
	pl, ok := b.set.Load().pools[profile]
	if !ok {
		return fmt.Errorf("no connection profile %q", profile)
	}
	pools := []*pool{pl}
	for _, v := range b.viaPools() {
		if v.name == profile {
			pools = append(pools, v)
		}
	}
	for _, p := range pools {
		for _, l := range p.links {
			l.disconnect()
		}
	}
	return nil
}

// disconnect ends the link's connection, if it has one, on request.
func (l *link) disconnect() {
	l.mu.Lock()
	s := l.cur
	if s != nil {
		l.cur = nil
		if l.idle != nil {
			l.idle.Stop()
			l.idle = nil
		}
		l.update(nil)
	}
	l.mu.Unlock()
	if s == nil {
		return
	}
	l.log.WithField("server", s.server).Info("SSH connection closed on request; its flows are reset")
	// watch then finds it is no longer current: no "lost" warning.
	s.end()
	l.pool.unusedCheck(false)
}
