package dns

import (
	"net"
	"net/netip"

	mdns "github.com/miekg/dns"
)

var _ mdns.Handler = (*Server)(nil)

// ServeDNS answers one query; it is the miekg handler Serve runs, and may
// be called from many goroutines.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	if r == nil || r.Response {
		return // never answer an answer
	}
	tcp := isTCP(w)
	m := s.answer(r, tcp)
	m.Compress = true
	if !tcp {
		// Truncate sets TC when records had to go, so the client asks
		// again over TCP, where the answer is whole.
		m.Truncate(clientSize(r))
	}
	if err := w.WriteMsg(m); err != nil {
		// An answer from afar that miekg cannot pack again.
		s.log.WithError(err).WithField("question", question(r)).Debug("cannot send the answer; sending SERVFAIL")
		f := s.reply(r, mdns.RcodeServerFailure)
		if err := w.WriteMsg(f); err != nil {
			s.log.WithError(err).Debug("cannot send an answer")
		}
	}
}

// answer returns the answer to r.
func (s *Server) answer(r *mdns.Msg, tcp bool) *mdns.Msg {
	if r.Opcode != mdns.OpcodeQuery {
		s.stats.malformed.Add(1)
		return s.reply(r, mdns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		s.stats.malformed.Add(1)
		return s.reply(r, mdns.RcodeFormatError)
	}
	if o := r.IsEdns0(); o != nil && o.Version() != 0 {
		s.stats.malformed.Add(1)
		return s.reply(r, mdns.RcodeBadVers)
	}
	q := r.Question[0]
	name := canon(q.Name)

	s.mu.RLock()
	pol := s.policy
	a, isReverse := reverseAddr(name)
	fakeReverse := isReverse && s.tab.inRange(a)
	s.mu.RUnlock()
	v, zone, t := pol.match(name)

	if fakeReverse || v != forwarded {
		// A name that is ours or the far side's never goes to an
		// upstream: not even in another class, or for a zone transfer.
		if q.Qclass != mdns.ClassINET || q.Qtype == mdns.TypeAXFR || q.Qtype == mdns.TypeIXFR {
			s.stats.refused.Add(1)
			return s.reply(r, mdns.RcodeRefused)
		}
	}
	var m *mdns.Msg
	switch {
	case fakeReverse:
		m = s.answerPTR(r, a)
		s.stats.fake.Add(1)
	case v == fake:
		m = s.reply(r, mdns.RcodeSuccess)
		m.Authoritative = true
		s.addFake(m, q.Name, name, zone, q.Qtype)
		s.stats.fake.Add(1)
	case v == through:
		m = s.viaTunnel(r, t)
	case len(s.opts.Upstreams) == 0:
		s.stats.refused.Add(1)
		m = s.reply(r, mdns.RcodeRefused)
	default:
		m = s.forward(r, tcp)
	}
	if m.Rcode == mdns.RcodeNameError {
		s.stats.nxdomain.Add(1)
	}
	return m
}

// reply returns an empty answer to r with rcode, and an OPT record if r
// had one.
func (s *Server) reply(r *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(r, rcode)
	m.RecursionAvailable = true
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(udpSize, o.Do())
	}
	return m
}

// addFake adds to m the answer for a name under the fake policy: owner
// (as asked) is the name, name its canonical form, zone the policy's
// name that holds it. A and AAAA get a fake address of their family
// (ANY both); every other type, or a family without a range, gets no
// record (NODATA, with an SOA for negative caching).
func (s *Server) addFake(m *mdns.Msg, owner, name, zone string, qtype uint16) {
	var a4, a6 netip.Addr
	switch qtype {
	case mdns.TypeA, mdns.TypeAAAA, mdns.TypeANY:
		a4, a6 = s.fakeAddrs(name)
	default:
		s.touch(name)
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: owner, Rrtype: t, Class: mdns.ClassINET, Ttl: s.ttl}
	}
	n := len(m.Answer)
	if a4.IsValid() && qtype != mdns.TypeAAAA {
		m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: a4.AsSlice()})
	}
	if a6.IsValid() && qtype != mdns.TypeA {
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: a6.AsSlice()})
	}
	if len(m.Answer) == n {
		m.Ns = append(m.Ns, s.soa(zone))
	}
}

// touch counts a use of name, if it has an entry.
func (s *Server) touch(name string) {
	s.mu.Lock()
	if e := s.tab.byName[name]; e != nil {
		s.tab.touch(e, s.clock())
	}
	s.mu.Unlock()
}

// soa is the record that says how long a negative answer of zone holds.
func (s *Server) soa(zone string) mdns.RR {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: mdns.Fqdn(zone), Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: s.ttl},
		Ns:      "shunt.invalid.",
		Mbox:    "hostmaster.shunt.invalid.",
		Serial:  1,
		Refresh: s.ttl,
		Retry:   s.ttl,
		Expire:  s.ttl,
		Minttl:  s.ttl,
	}
}

// answerPTR answers a query for the reverse name of a fake address:
// PTR gives the name it stands for; a fake address without a name does
// not exist.
func (s *Server) answerPTR(r *mdns.Msg, a netip.Addr) *mdns.Msg {
	q := r.Question[0]
	s.mu.Lock()
	var name string
	if e := s.tab.byAddr[a]; e != nil {
		s.tab.touch(e, s.clock())
		name = e.name
	}
	s.mu.Unlock()
	if name == "" {
		m := s.reply(r, mdns.RcodeNameError)
		m.Authoritative = true
		return m
	}
	m := s.reply(r, mdns.RcodeSuccess)
	m.Authoritative = true
	if q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY {
		m.Answer = append(m.Answer, &mdns.PTR{
			Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypePTR, Class: mdns.ClassINET, Ttl: s.ttl},
			Ptr: mdns.Fqdn(name),
		})
	}
	return m
}

// isTCP reports whether w answers over a stream.
func isTCP(w mdns.ResponseWriter) bool {
	a := w.LocalAddr()
	if a == nil {
		return false
	}
	switch a.(type) {
	case *net.TCPAddr:
		return true
	case *net.UDPAddr:
		return false
	}
	switch a.Network() {
	case "tcp", "tcp4", "tcp6":
		return true
	}
	return false
}

// clientSize is the largest answer the client takes over UDP.
func clientSize(r *mdns.Msg) int {
	if o := r.IsEdns0(); o != nil {
		return max(int(o.UDPSize()), mdns.MinMsgSize)
	}
	return mdns.MinMsgSize
}

// question describes r's question for the log.
func question(r *mdns.Msg) string {
	if len(r.Question) == 0 {
		return ""
	}
	q := r.Question[0]
	return q.Name + " " + mdns.Type(q.Qtype).String()
}
