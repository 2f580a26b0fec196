package dns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// maxNames bounds the table: a /64 would hold more names than memory.
// 65,536 names in use at once is far more than rules name; at about 150
// bytes a name it keeps the table near 10 MB and the state file near 6 MB.
const maxNames = 1 << 16

// An entry binds a name to its fake addresses, at most one of each family.
type entry struct {
	name       string
	addr       [2]netip.Addr // [v4], [v6]; the zero Addr if none
	used       int64         // when last used, on the server's clock
	prev, next *entry        // towards the front (more recent), the back
}

const (
	v4 = 0
	v6 = 1
)

func family(a netip.Addr) int {
	if a.Is4() {
		return v4
	}
	return v6
}

// span is the usable part of a fake range: count addresses from first.
type span struct {
	prefix netip.Prefix
	first  netip.Addr
	count  uint64
}

// usable returns the addresses of p that may be handed out: all but the
// network address and, for IPv4, the broadcast address. Counts beyond
// 2^62 are cut there (no table gets near them).
func usable(p netip.Prefix) span {
	host := p.Addr().BitLen() - p.Bits()
	var n uint64
	switch {
	case host >= 62:
		n = 1 << 62
	case p.Addr().Is4():
		n = max(uint64(1)<<host, 2) - 2
	default:
		n = uint64(1)<<host - 1
	}
	return span{prefix: p, first: add(p.Addr(), 1), count: n}
}

// add returns a+off, for offsets within a's prefix.
func add(a netip.Addr, off uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(off))
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	nlo := lo + off
	if nlo < lo {
		hi++
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], nlo)
	return netip.AddrFrom16(b)
}

// pool hands out the fake addresses of one family.
type pool struct {
	spans []span
	total uint64
	next  uint64       // addresses before next (in span order) were handed out since the last reset
	free  []netip.Addr // addresses given back; checked again before reuse
}

func (p *pool) contains(a netip.Addr) bool {
	for _, s := range p.spans {
		if s.prefix.Contains(a) {
			return true
		}
	}
	return false
}

// valid reports whether a may be handed out.
func (p *pool) valid(a netip.Addr) bool {
	for _, s := range p.spans {
		if s.prefix.Contains(a) {
			return a != s.prefix.Addr() && (a.Is6() || a != add(s.prefix.Addr(), s.count+1))
		}
	}
	return false
}

func (p *pool) at(off uint64) netip.Addr {
	for _, s := range p.spans {
		if off < s.count {
			return add(s.first, off)
		}
		off -= s.count
	}
	panic("dns: fake address offset out of range")
}

// alloc returns an address that taken does not hold.
func (p *pool) alloc(taken map[netip.Addr]*entry) (netip.Addr, bool) {
	for len(p.free) > 0 {
		a := p.free[len(p.free)-1]
		p.free = p.free[:len(p.free)-1]
		if taken[a] == nil && p.valid(a) {
			return a, true
		}
	}
	for p.next < p.total {
		a := p.at(p.next)
		p.next++
		if taken[a] == nil {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// checkRanges validates fake ranges and sorts them into pools.
func checkRanges(ranges []netip.Prefix) ([2]pool, error) {
	var pools [2]pool
	if len(ranges) == 0 {
		return pools, fmt.Errorf("no fake-IP range")
	}
	for i, r := range ranges {
		switch {
		case !r.IsValid():
			return pools, fmt.Errorf("fake-IP range %q is not a prefix", r)
		case r.Addr().Is4In6():
			return pools, fmt.Errorf("fake-IP range %v: write an IPv4 range in IPv4 form", r)
		case r.Masked() != r:
			return pools, fmt.Errorf("fake-IP range %v has bits set past its length (did you mean %v?)", r, r.Masked())
		case r.Addr().Zone() != "":
			return pools, fmt.Errorf("fake-IP range %v has a zone", r)
		}
		s := usable(r)
		if s.count == 0 {
			return pools, fmt.Errorf("fake-IP range %v holds no usable address (the network and broadcast addresses are never handed out)", r)
		}
		for _, o := range ranges[:i] {
			if o.Overlaps(r) {
				return pools, fmt.Errorf("fake-IP ranges %v and %v overlap", o, r)
			}
		}
		p := &pools[family(r.Addr())]
		p.spans = append(p.spans, s)
		p.total = min(p.total+s.count, 1<<62)
	}
	return pools, nil
}

// table is the fake-IP table: names and their addresses, in LRU order.
// The Server's mutex guards it.
type table struct {
	pools      [2]pool
	byName     map[string]*entry
	byAddr     map[netip.Addr]*entry
	head, tail *entry // most recently used, least
	max        int
}

func newTable(pools [2]pool, max int) *table {
	return &table{pools: pools, byName: map[string]*entry{}, byAddr: map[netip.Addr]*entry{}, max: max}
}

// inRange reports whether a lies in a fake range.
func (t *table) inRange(a netip.Addr) bool { return t.pools[family(a)].contains(a) }

// complete reports whether e has an address of every family with a range.
func (t *table) complete(e *entry) bool {
	for f := range t.pools {
		if t.pools[f].total > 0 && !e.addr[f].IsValid() {
			return false
		}
	}
	return true
}

func (t *table) pushFront(e *entry) {
	e.prev, e.next = nil, t.head
	if t.head != nil {
		t.head.prev = e
	}
	t.head = e
	if t.tail == nil {
		t.tail = e
	}
}

func (t *table) pushBack(e *entry) {
	e.prev, e.next = t.tail, nil
	if t.tail != nil {
		t.tail.next = e
	}
	t.tail = e
	if t.head == nil {
		t.head = e
	}
}

func (t *table) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// touch records a use of e: it goes to the front.
func (t *table) touch(e *entry, now int64) {
	e.used = now
	if t.head != e {
		t.unlink(e)
		t.pushFront(e)
	}
}

// ensure returns name's entry, made or completed with an address of
// every family that has a range, recycling the least recently used
// entries when a pool or the table is full, and records a use of it. It
// reports whether the table changed.
func (t *table) ensure(name string, now int64) (*entry, bool) {
	e := t.byName[name]
	changed := false
	if e != nil {
		t.touch(e, now)
	} else {
		if len(t.byName) >= t.max {
			t.evict(-1, nil)
		}
		e = &entry{name: name, used: now}
		t.byName[name] = e
		t.pushFront(e)
		changed = true
	}
	for f := range t.pools {
		p := &t.pools[f]
		if p.total == 0 || e.addr[f].IsValid() {
			continue
		}
		a, ok := p.alloc(t.byAddr)
		if !ok && t.evict(f, e) {
			a, ok = p.alloc(t.byAddr)
		}
		if !ok {
			continue // cannot happen: a range holds at least one address
		}
		e.addr[f] = a
		t.byAddr[a] = e
		changed = true
	}
	return e, changed
}

// evict removes the least recently used entry other than keep (one that
// holds an address of family f, if f >= 0), and gives its addresses back.
func (t *table) evict(f int, keep *entry) bool {
	for e := t.tail; e != nil; e = e.prev {
		if e == keep || f >= 0 && !e.addr[f].IsValid() {
			continue
		}
		t.remove(e)
		return true
	}
	return false
}

// remove deletes e and gives its addresses back to their pools.
func (t *table) remove(e *entry) {
	t.unlink(e)
	delete(t.byName, e.name)
	for f, a := range e.addr {
		if a.IsValid() {
			delete(t.byAddr, a)
			t.pools[f].free = append(t.pools[f].free, a)
		}
	}
}

// setRanges changes the fake ranges: addresses outside them are dropped,
// and entries left with none are removed. It returns how many addresses
// it dropped.
func (t *table) setRanges(pools [2]pool) int {
	t.pools = pools
	dropped := 0
	for e := t.head; e != nil; {
		next := e.next
		for f, a := range e.addr {
			if a.IsValid() && !t.pools[f].valid(a) {
				delete(t.byAddr, a)
				e.addr[f] = netip.Addr{}
				dropped++
			}
		}
		if !e.addr[v4].IsValid() && !e.addr[v6].IsValid() {
			t.unlink(e)
			delete(t.byName, e.name)
		}
		e = next
	}
	return dropped
}

// add puts a loaded entry at the back of the table, unless its name or
// one of its addresses is taken or invalid: entries are added most
// recently used first, so that the more recent one wins a conflict.
func (t *table) add(name string, addrs []netip.Addr, used int64) bool {
	if t.byName[name] != nil || len(t.byName) >= t.max {
		return false
	}
	e := &entry{name: name, used: used}
	for _, a := range addrs {
		f := family(a)
		if e.addr[f].IsValid() || t.byAddr[a] != nil || !t.pools[f].valid(a) {
			return false
		}
		e.addr[f] = a
	}
	if !e.addr[v4].IsValid() && !e.addr[v6].IsValid() {
		return false
	}
	for _, a := range e.addr {
		if a.IsValid() {
			t.byAddr[a] = e
		}
	}
	t.byName[name] = e
	t.pushBack(e)
	return true
}

// addrs returns e's addresses, IPv4 first.
func (e *entry) addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range e.addr {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return slices.Clip(out)
}
