// Package events delivers what happens in a running shunt (flows opened
// and closed, connection states, pending prompts) to whoever listens: the
// control socket's `flows --follow`, the metrics, a test.
//
// Publishers are on the data path, listeners are not: a publisher never
// waits for a listener. Each subscription has a bounded buffer; when it is
// full, the event is dropped for that subscriber and counted. With nobody
// subscribed, Active is one atomic load, so a publisher can skip building
// the event at all.
package events

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/shunt-dev/shunt/state"
)

// Bus hands each published event to every current subscription. The zero
// Bus is ready to use; a Bus must not be copied after first use.
type Bus struct {
	// subs is replaced whole (copy on write) when a subscription comes or
	// goes, so Publish reads it with one atomic load and no lock.
	subs    atomic.Pointer[[]*Subscription]
	mu      sync.Mutex // serialises changes to subs
	dropped atomic.Uint64
}

// Active reports whether anyone is subscribed. Publishers check it before
// building an event; an event built anyway is simply discarded. A nil Bus
// is never active.
func (b *Bus) Active() bool {
	if b == nil {
		return false
	}
	s := b.subs.Load()
	return s != nil && len(*s) > 0
}

// Publish hands e to every subscription that has room for it, and counts a
// drop for each that has not. It never blocks on a subscriber. A zero Time
// is set to the current time. The event's pointers (Flow, Profile, Prompt)
// are shared by all subscribers: they must not modify what they point to.
//
// Events from one goroutine reach each subscriber in the order they were
// published.
func (b *Bus) Publish(e state.Event) {
	if b == nil {
		return
	}
	s := b.subs.Load()
	if s == nil || len(*s) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	for _, sub := range *s {
		sub.send(e)
	}
}

// Dropped counts the events lost by all subscriptions, current and past,
// because their buffers were full.
func (b *Bus) Dropped() uint64 { return b.dropped.Load() }

// Subscribers counts the current subscriptions.
func (b *Bus) Subscribers() int {
	s := b.subs.Load()
	if s == nil {
		return 0
	}
	return len(*s)
}

// Subscribe starts a subscription whose channel buffers up to buffer events
// (at least 1). Events published from now on are delivered to it until
// Close.
func (b *Bus) Subscribe(buffer int) *Subscription {
	sub := &Subscription{bus: b, c: make(chan state.Event, max(buffer, 1))}
	b.mu.Lock()
	defer b.mu.Unlock()
	var next []*Subscription
	if cur := b.subs.Load(); cur != nil {
		next = append(next, *cur...)
	}
	next = append(next, sub)
	b.subs.Store(&next)
	return sub
}

func (b *Bus) remove(sub *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.subs.Load()
	if cur == nil {
		return
	}
	next := make([]*Subscription, 0, len(*cur))
	for _, s := range *cur {
		if s != sub {
			next = append(next, s)
		}
	}
	b.subs.Store(&next)
}

// Subscription is one listener's queue of events.
type Subscription struct {
	bus     *Bus
	c       chan state.Event
	dropped atomic.Uint64

	mu     sync.Mutex // orders sends against Close, which closes c
	closed bool
}

// C delivers the events. It is closed by Close.
func (s *Subscription) C() <-chan state.Event { return s.c }

// Dropped counts the events this subscription lost because its buffer was
// full when they were published.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription: no more events are delivered, and C is
// closed once the events already buffered are read. Closing twice is
// harmless.
func (s *Subscription) Close() {
	s.bus.remove(s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

func (s *Subscription) send(e state.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.c <- e:
	default:
		s.dropped.Add(1)
		s.bus.dropped.Add(1)
	}
}
