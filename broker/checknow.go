package broker

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// checkTimeout bounds CheckNow's keepalive: a connection whose server has
// sent nothing by then is replaced. A profile with a shorter keepalive
// interval gets that (but at least checkMin).
const (
	checkTimeout = 5 * time.Second
	checkMin     = time.Second
)

// CheckNow checks every SSH connection at once, without waiting for the
// next keepalive: after a network change (a new address, another default
// route) or a jump of the clock (the machine slept, shunt was stopped).
// A connection whose local address is no longer on the machine is replaced
// at once; every other one is sent a keepalive, and is replaced unless the
// server sends something within a short bound (checkTimeout). Replaced
// connections' flows are reset; the next flow connects anew. reason is
// logged. CheckNow returns once every check has ended, with how many
// connections it replaced; call it from a goroutine of its own.
func (b *Broker) CheckNow(reason string) (replaced int) {
	local, err := localAddrs()
	if err != nil {
		// Without the machine's addresses, the keepalive decides.
		b.log.WithError(err).Debug("reading the machine's addresses")
		local = nil
	}
	var links []*link
	b.viaMu.Lock()
	for _, pl := range b.set.Load().order {
		links = append(links, pl.links...)
	}
	for _, pl := range b.via {
		links = append(links, pl.links...)
	}
	b.viaMu.Unlock()
	for _, pl := range b.retiredPools() {
		links = append(links, pl.links...)
	}
	var (
		wg      sync.WaitGroup
		n       atomic.Int64
		checked int
	)
	for _, l := range links {
		l.mu.Lock()
		s := l.cur
		if l.closed {
			s = nil
		}
		l.mu.Unlock()
		if s == nil {
			continue
		}
		checked++
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !l.check(s, local) {
				n.Add(1)
			}
		}()
	}
	if checked == 0 {
		b.log.WithField("reason", reason).Debug("no SSH connection to check")
		return 0
	}
	b.log.WithFields(logrus.Fields{"reason": reason, "connections": checked}).Info("checking the SSH connections now")
	wg.Wait()
	return int(n.Load())
}

// check tells whether s, l's connection, is alive: its local address still
// on the machine (local; nil when unknown), and its server answering a
// keepalive in time. A dead one is dropped.
func (l *link) check(s *session, local map[netip.Addr]bool) bool {
	if a, ok := s.transport.LocalAddr().(*net.TCPAddr); ok && local != nil {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		// A jump's channel has no address of its own (0.0.0.0).
		if ip.IsValid() && !ip.IsUnspecified() && !ip.IsLoopback() && !local[ip] {
			l.log.WithFields(logrus.Fields{"server": s.server, "local_address": ip.String()}).
				Warn("the SSH connection's local address is no longer on this machine; replacing the connection, its flows are reset")
			l.drop(s, fmt.Errorf("SSH connection to %s lost: its local address %s is gone", s.server, ip))
			return false
		}
	}
	bound := min(checkTimeout, max(l.pool.p.KeepaliveInterval, checkMin))
	start := time.Now()
	answered := make(chan struct{})
	go func() {
		// Any answer, even "unknown request", proves the connection
		// alive; it returns with an error once the connection ends.
		s.client.SendRequest("keepalive@openssh.com", true, nil)
		close(answered)
	}()
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-answered:
		return !s.lost()
	case <-s.done:
		return false
	case <-t.C:
	}
	// Any byte since the check began proves it alive too: a busy
	// connection's reply may queue behind data.
	if time.Unix(0, s.transport.lastRead.Load()).After(start) {
		return true
	}
	l.log.WithFields(logrus.Fields{"server": s.server, "bound": bound.String()}).
		Warn("SSH server did not answer a keepalive after a network change or a clock jump; replacing the connection, its flows are reset")
	l.drop(s, fmt.Errorf("SSH server %s did not answer a keepalive within %v", s.server, bound))
	return false
}

// localAddrs are the addresses on the machine's interfaces.
func localAddrs() (map[netip.Addr]bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				m[ip.Unmap()] = true
			}
		}
	}
	return m, nil
}
