// Package resolver keeps the addresses of the host names that rules name:
// it resolves them at start and again when each answer's TTL runs out, so
// routes and decisions follow DNS. It asks the system's name servers
// directly (Go's resolver hides TTLs), through a dialer that bypasses the
// capture.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/sirupsen/logrus"
)

// Bounds on how often a name is asked again.
const (
	MinTTL     = 5 * time.Second
	MaxTTL     = time.Hour
	RetryAfter = 30 * time.Second // after a failed look-up
	queryTime  = 5 * time.Second
)

// Options configure a Resolver.
type Options struct {
	// Servers are "host:port" name servers; nil means those of
	// /etc/resolv.conf.
	Servers []string
	// Dialer reaches the name servers (it must bypass the capture).
	Dialer *net.Dialer
	// OnChange is called (from the resolver's goroutine) whenever a
	// name's addresses change.
	OnChange func()
	Log      logrus.FieldLogger
}

// Resolver watches a set of host names.
type Resolver struct {
	opts  Options
	hosts []string

	mu    sync.RWMutex
	addrs map[string][]netip.Addr // host → addresses
	names map[netip.Addr][]string // address → hosts

	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a resolver for hosts. Start resolves them.
func New(hosts []string, opts Options) (*Resolver, error) {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if opts.Servers == nil {
		cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("read /etc/resolv.conf for the name servers: %w", err)
		}
		for _, s := range cfg.Servers {
			opts.Servers = append(opts.Servers, net.JoinHostPort(s, cfg.Port))
		}
	}
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	return &Resolver{
		opts:  opts,
		hosts: slices.Clone(hosts),
		addrs: map[string][]netip.Addr{},
		names: map[netip.Addr][]string{},
		done:  make(chan struct{}),
	}, nil
}

// Start resolves every name once (a name that does not resolve is logged,
// not fatal), then keeps them fresh in the background until Close.
func (r *Resolver) Start() {
	next := map[string]time.Time{}
	for _, h := range r.hosts {
		next[h] = time.Now().Add(r.refresh(h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.loop(ctx, next)
}

func (r *Resolver) loop(ctx context.Context, next map[string]time.Time) {
	defer close(r.done)
	if len(next) == 0 {
		<-ctx.Done()
		return
	}
	for {
		var host string
		var at time.Time
		for h, t := range next {
			if host == "" || t.Before(at) {
				host, at = h, t
			}
		}
		timer := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		next[host] = time.Now().Add(r.refresh(host))
	}
}

// refresh looks host up and returns when to look again.
func (r *Resolver) refresh(host string) time.Duration {
	addrs, ttl, err := r.lookup(host)
	log := r.opts.Log.WithField("host", host)
	if err != nil {
		r.mu.RLock()
		old := r.addrs[host]
		r.mu.RUnlock()
		if len(old) > 0 {
			log.WithError(err).Warn("host name did not resolve; keeping its last addresses")
		} else {
			log.WithError(err).Warn("host name in a rule does not resolve here: the rule cannot match it until it does (names only the far side knows need split DNS)")
		}
		return RetryAfter
	}
	if r.set(host, addrs) {
		log.WithFields(logrus.Fields{"addresses": addrs, "ttl": ttl.String()}).Info("host name resolved")
		if r.opts.OnChange != nil {
			r.opts.OnChange()
		}
	}
	return min(max(ttl, MinTTL), MaxTTL)
}

// set records host's addresses and reports whether they changed.
func (r *Resolver) set(host string, addrs []netip.Addr) bool {
	slices.SortFunc(addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	addrs = slices.Compact(addrs)
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.addrs[host]
	if slices.Equal(old, addrs) {
		return false
	}
	for _, a := range old {
		r.names[a] = slices.DeleteFunc(r.names[a], func(h string) bool { return h == host })
		if len(r.names[a]) == 0 {
			delete(r.names, a)
		}
	}
	r.addrs[host] = addrs
	for _, a := range addrs {
		r.names[a] = append(r.names[a], host)
	}
	return true
}

// lookup asks for A and AAAA; the TTL is the smallest of the answers.
func (r *Resolver) lookup(host string) ([]netip.Addr, time.Duration, error) {
	var addrs []netip.Addr
	ttl := MaxTTL
	var errs []error
	answered := false
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := r.query(host, qt)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		answered = true
		for _, rr := range rrs {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			default:
				continue
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a.Unmap())
				ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
			}
		}
	}
	if !answered {
		return nil, 0, errors.Join(errs...)
	}
	if len(addrs) == 0 {
		return nil, 0, fmt.Errorf("%s has no address", host)
	}
	return addrs, ttl, nil
}

func (r *Resolver) query(host string, qt uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), qt)
	c := &dns.Client{Dialer: r.opts.Dialer, Timeout: queryTime}
	var errs []error
	for _, s := range r.opts.Servers {
		in, _, err := c.Exchange(m, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("ask %s: %w", s, err))
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
			return in.Answer, nil
		case dns.RcodeNameError:
			return nil, fmt.Errorf("%s does not exist (NXDOMAIN from %s)", host, s)
		default:
			errs = append(errs, fmt.Errorf("ask %s: %s", s, dns.RcodeToString[in.Rcode]))
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no name server configured")
	}
	return nil, errors.Join(errs...)
}

// Addrs returns the addresses host resolved to last.
func (r *Resolver) Addrs(host string) []netip.Addr {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.addrs[host])
}

// Names returns the watched host names that resolve to addr.
func (r *Resolver) Names(addr netip.Addr) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.names[addr.Unmap()]) // set changes the stored slice in place
}

// Close stops the refreshes.
func (r *Resolver) Close() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
}
