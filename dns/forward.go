package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/sirupsen/logrus"
)

// forward asks the upstreams, in order, until one answers: over UDP
// first and again over TCP when the answer is truncated, or over TCP
// when the client asked over TCP. An upstream that answers SERVFAIL,
// REFUSED or NOTIMP is passed over as glibc does; when no upstream gives
// a better answer the last such answer is relayed, and SERVFAIL when none
// answered at all.
func (s *Server) forward(r *mdns.Msg, tcp bool) *mdns.Msg {
	if !s.acquire() {
		return s.fail(r, "inflight", "too many queries in flight: answering SERVFAIL", nil, errors.New("too many queries in flight"))
	}
	defer s.release()
	var last *mdns.Msg
	var errs []error
	for _, up := range s.opts.Upstreams {
		addr := up.String()
		var resp *mdns.Msg
		var err error
		if tcp {
			resp, err = s.askUpstream(r, "tcp", addr)
		} else {
			resp, err = s.askUpstream(r, "udp", addr)
			if err == nil && resp.Truncated {
				if full, err := s.askUpstream(r, "tcp", addr); err == nil {
					resp = full
				} else {
					// The truncated answer is still an answer: the
					// client asks again over TCP.
					s.log.WithError(err).WithField("upstream", addr).Debug("upstream truncated its answer over UDP and did not answer over TCP")
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		if m := s.toFake(r, resp); m != nil {
			s.stats.fake.Add(1)
			return m
		}
		switch resp.Rcode {
		case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeNotImplemented:
			last = resp
			continue
		}
		s.stats.forwarded.Add(1)
		return resp
	}
	if last != nil {
		if last.Rcode == mdns.RcodeServerFailure {
			s.stats.failed.Add(1)
		} else {
			s.stats.forwarded.Add(1)
		}
		return last
	}
	return s.fail(r, "upstreams", "no upstream resolver answered: answering SERVFAIL", nil, errors.Join(errs...))
}

// askUpstream asks r of one upstream, and returns the answer with r's ID.
func (s *Server) askUpstream(r *mdns.Msg, network, addr string) (*mdns.Msg, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	c, err := s.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return exchange(ctx, c, r, network == "udp")
}

// viaTunnel asks r of the far-side resolver of t, over DNS over TCP on a
// channel. A resolver that does not answer, or a channel that does not
// open, is a SERVFAIL within the timeout, and a warning naming the profile
// and the server. The names in the answer's A and AAAA records are
// remembered for Names.
func (s *Server) viaTunnel(r *mdns.Msg, t *Through) *mdns.Msg {
	key := "through " + t.Profile + " " + t.Server.String()
	const msg = "far-side resolver (resolve_through) failed: answering SERVFAIL"
	fields := logrus.Fields{"profile": t.Profile, "server": t.Server.String()}
	if !s.acquire() {
		return s.fail(r, "inflight", "too many queries in flight: answering SERVFAIL", nil, errors.New("too many queries in flight"))
	}
	defer s.release()
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	c, err := s.dialTunnel(ctx, t.Profile, t.Server.String())
	if err != nil {
		return s.fail(r, key, msg, fields, fmt.Errorf("open a channel of profile %s to %s: %w", t.Profile, t.Server, err))
	}
	defer c.Close()
	resp, err := exchange(ctx, c, r, false)
	if err != nil {
		return s.fail(r, key, msg, fields, fmt.Errorf("%s did not answer: %w", t.Server, err))
	}
	s.learn(resp)
	if m := s.toFake(r, resp); m != nil {
		s.stats.fake.Add(1)
		return m
	}
	if resp.Rcode == mdns.RcodeServerFailure {
		s.stats.failed.Add(1)
	} else {
		s.stats.through.Add(1)
	}
	return resp
}

// dialTunnel opens a channel, and gives up at ctx's end even if Tunnels
// does not; a channel that opens too late is closed.
func (s *Server) dialTunnel(ctx context.Context, profile, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result)
	go func() {
		c, err := s.opts.Tunnels.Dial(ctx, profile, addr)
		select {
		case ch <- result{c, err}:
		case <-ctx.Done():
			if c != nil {
				c.Close()
			}
		}
	}()
	select {
	case res := <-ch:
		if res.err == nil && res.c == nil {
			return nil, errors.New("no channel")
		}
		return res.c, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fail answers SERVFAIL and logs why, at most every warnEvery for each
// key.
func (s *Server) fail(r *mdns.Msg, key, msg string, fields logrus.Fields, err error) *mdns.Msg {
	s.stats.failed.Add(1)
	s.warns.warn(key, msg, fields, err, question(r))
	return s.reply(r, mdns.RcodeServerFailure)
}

func (s *Server) acquire() bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Server) release() { <-s.slots }

// exchange sends q on c (a datagram socket if udp, else a stream with
// two-byte length framing) under a fresh ID, and returns the answer that
// matches it, with q's ID. It gives up when ctx is done.
func exchange(ctx context.Context, c net.Conn, q *mdns.Msg, udp bool) (*mdns.Msg, error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	// A conn that ignores deadlines is unblocked by closing it.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	out := q.Copy()
	out.Id = mdns.Id()
	b, err := out.Pack()
	if err != nil {
		return nil, err
	}
	if udp {
		if _, err := c.Write(b); err != nil {
			return nil, err
		}
		buf := make([]byte, mdns.MaxMsgSize)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return nil, ctxErr(ctx, err)
			}
			m := new(mdns.Msg)
			if m.Unpack(buf[:n]) != nil || !matches(out, m) {
				continue // not the answer: stale or forged
			}
			m.Id = q.Id
			return m, nil
		}
	}
	if len(b) > mdns.MaxMsgSize {
		return nil, errors.New("query too large")
	}
	framed := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(framed, uint16(len(b)))
	copy(framed[2:], b)
	if _, err := c.Write(framed); err != nil {
		return nil, ctxErr(ctx, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	in := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, in); err != nil {
		return nil, ctxErr(ctx, err)
	}
	m := new(mdns.Msg)
	if err := m.Unpack(in); err != nil {
		return nil, fmt.Errorf("bad answer: %w", err)
	}
	if !matches(out, m) {
		return nil, errors.New("the answer does not match the question")
	}
	m.Id = q.Id
	return m, nil
}

// ctxErr prefers ctx's reason for an error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// matches reports whether m answers q.
func matches(q, m *mdns.Msg) bool {
	if !m.Response || m.Id != q.Id || m.Opcode != q.Opcode {
		return false
	}
	if len(m.Question) == 0 {
		// Some servers leave the question out of an error.
		return m.Rcode != mdns.RcodeSuccess && m.Rcode != mdns.RcodeNameError
	}
	a, b := q.Question[0], m.Question[0]
	return len(m.Question) == 1 && a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}

// chain follows resp's CNAME chain from qname: names are its names
// (canonical, qname first), owners the same as the records spell them,
// cnames the records, and hops[i] the TTL of the record that leads to
// names[i] (hops[0] is unused).
func chain(resp *mdns.Msg, qname string) (names, owners []string, cnames []mdns.RR, hops []uint32) {
	names, owners, hops = []string{canon(qname)}, []string{qname}, []uint32{0}
	var next map[string]*mdns.CNAME // owner → the first CNAME record it has
	for _, rr := range resp.Answer {
		if c, ok := rr.(*mdns.CNAME); ok && c.Hdr.Class == mdns.ClassINET {
			if next == nil {
				next = map[string]*mdns.CNAME{}
			}
			if o := canon(c.Hdr.Name); next[o] == nil {
				next[o] = c
			}
		}
	}
	seen := map[string]bool{names[0]: true}
	for c := next[names[0]]; c != nil; c = next[names[len(names)-1]] {
		t := canon(c.Target)
		if seen[t] {
			break // a loop
		}
		seen[t] = true
		names = append(names, t)
		owners = append(owners, c.Target)
		cnames = append(cnames, c)
		hops = append(hops, c.Hdr.Ttl)
	}
	return names, owners, cnames, hops
}

// toFake rewrites an answer whose CNAME chain leads to a name under the
// fake policy: the chain up to that name, then its fake addresses, and
// NOERROR whatever the upstream made of the name it cannot know. It
// returns nil for any other answer.
func (s *Server) toFake(r, resp *mdns.Msg) *mdns.Msg {
	q := r.Question[0]
	names, owners, cnames, _ := chain(resp, q.Name)
	if len(names) < 2 {
		return nil
	}
	s.mu.RLock()
	pol := s.policy
	s.mu.RUnlock()
	for i := 1; i < len(names); i++ {
		v, zone, _ := pol.match(names[i])
		if v != fake {
			continue
		}
		m := s.reply(r, mdns.RcodeSuccess)
		for _, c := range cnames[:i] {
			m.Answer = append(m.Answer, mdns.Copy(c))
		}
		if q.Qtype != mdns.TypeCNAME {
			s.addFake(m, owners[i], names[i], zone, q.Qtype)
		}
		return m
	}
	return nil
}

// learn remembers the addresses of a far-side answer: an A or AAAA
// record of a name of the question's CNAME chain gives its address that
// name and those before it in the chain, each until its part of the
// chain or the record expires (but at least minLearned, so that a flow
// that starts just after an answer with TTL 0 finds the name).
func (s *Server) learn(resp *mdns.Msg) {
	if len(resp.Question) != 1 || resp.Rcode != mdns.RcodeSuccess {
		return
	}
	names, _, _, hops := chain(resp, resp.Question[0].Name)
	index := make(map[string]int, len(names))
	for i, n := range names {
		index[n] = i
	}
	now := s.now()
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for _, rr := range resp.Answer {
		var a netip.Addr
		switch rr := rr.(type) {
		case *mdns.A:
			a, _ = netip.AddrFromSlice(rr.A)
		case *mdns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA)
		default:
			continue
		}
		a = a.Unmap()
		h := rr.Header()
		k, ok := index[canon(h.Name)]
		if !a.IsValid() || h.Class != mdns.ClassINET || !ok {
			continue // not of the chain: nothing says it answers the question
		}
		if _, ok := s.learned[a]; !ok && len(s.learned) >= maxLearned {
			s.pruneLearned(now)
			if len(s.learned) >= maxLearned {
				continue
			}
		}
		// ttls[i]: how long names[i] leads to the record.
		ttls := make([]uint32, k+1)
		ttls[k] = h.Ttl
		for i := k - 1; i >= 0; i-- {
			ttls[i] = min(ttls[i+1], hops[i+1])
		}
		list := s.learned[a]
		for i, n := range names[:k+1] {
			until := now.Add(max(time.Duration(ttls[i])*time.Second, minLearned))
			j := slices.IndexFunc(list, func(l learnedName) bool { return l.name == n })
			if j < 0 {
				list = append(list, learnedName{name: n, until: until})
			} else if until.After(list[j].until) {
				list[j].until = until
			}
		}
		s.learned[a] = list
	}
	if len(s.learned) > s.pruneAt {
		s.pruneLearned(now)
		s.pruneAt = max(1024, 2*len(s.learned))
	}
}

// pruneLearned forgets the names whose time has run out (under lmu).
func (s *Server) pruneLearned(now time.Time) {
	for a, list := range s.learned {
		keep := list[:0]
		for _, l := range list {
			if now.Before(l.until) {
				keep = append(keep, l)
			}
		}
		if len(keep) == 0 {
			delete(s.learned, a)
		} else {
			s.learned[a] = keep
		}
	}
}

// warner logs a failure at most every warnEvery for each key, and says
// how many it kept quiet, so that a flood does not flood the log.
type warner struct {
	s    *Server
	mu   sync.Mutex
	keys map[string]*warnState
}

type warnState struct {
	next  time.Time
	quiet int
}

func (w *warner) warn(key, msg string, fields logrus.Fields, err error, q string) {
	now := w.s.now()
	w.mu.Lock()
	if w.keys == nil {
		w.keys = map[string]*warnState{}
	}
	st := w.keys[key]
	if st == nil {
		st = &warnState{}
		w.keys[key] = st
	}
	if now.Before(st.next) {
		st.quiet++
		w.mu.Unlock()
		return
	}
	quiet := st.quiet
	st.quiet = 0
	st.next = now.Add(warnEvery)
	w.mu.Unlock()
	l := w.s.log.WithFields(fields).WithError(err).WithField("question", q)
	if quiet > 0 {
		l = l.WithField("failures_not_logged", quiet)
	}
	l.Warn(msg)
}
