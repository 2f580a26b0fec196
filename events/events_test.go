package events

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/state"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ev is an event that carries a publisher and a sequence number.
func ev(pub, seq int) state.Event {
	return state.Event{Event: state.EventOpen, Flow: &state.Flow{ID: uint64(seq)}, Reason: fmt.Sprint(pub)}
}

func TestDeliversInOrder(t *testing.T) {
	var b Bus
	if b.Active() {
		t.Fatal("a bus without subscribers is active")
	}
	s1, s2 := b.Subscribe(10), b.Subscribe(10)
	if !b.Active() || b.Subscribers() != 2 {
		t.Fatalf("Active %v, Subscribers %d; want true, 2", b.Active(), b.Subscribers())
	}
	for i := range 5 {
		b.Publish(ev(0, i))
	}
	for _, s := range []*Subscription{s1, s2} {
		for i := range 5 {
			e := <-s.C()
			if e.Flow.ID != uint64(i) {
				t.Fatalf("event %d has sequence %d", i, e.Flow.ID)
			}
			if e.Time.IsZero() {
				t.Error("Publish left Time zero")
			}
		}
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b.Publish(state.Event{Event: state.EventClose, Time: at})
	if e := <-s1.C(); !e.Time.Equal(at) {
		t.Errorf("Publish replaced the event's time %v with %v", at, e.Time)
	}
	<-s2.C()
	s1.Close()
	s1.Close() // harmless
	if _, ok := <-s1.C(); ok {
		t.Error("a closed subscription's channel delivers")
	}
	b.Publish(ev(0, 9))
	if e := <-s2.C(); e.Flow.ID != 9 {
		t.Errorf("the remaining subscription got %+v", e)
	}
	s2.Close()
	if b.Active() {
		t.Error("the bus is still active with every subscription closed")
	}
}

// A subscriber that does not read loses what does not fit its buffer, and
// the loss is counted for it and for the bus; the publisher goes on, and
// a subscriber that reads gets everything.
func TestSlowSubscriberDrops(t *testing.T) {
	var b Bus
	slow := b.Subscribe(3)
	defer slow.Close()
	fast := b.Subscribe(1)
	defer fast.Close()
	const n = 1000
	got := make(chan int)
	go func() {
		i := 0
		for e := range fast.C() {
			if e.Flow.ID != uint64(i) {
				t.Errorf("fast subscriber: event %d has sequence %d", i, e.Flow.ID)
			}
			i++
			if i == n {
				break
			}
		}
		got <- i
	}()
	for i := range n {
		// The fast subscriber's buffer holds one event: wait until it
		// took the last one, so it loses none (the slow one never reads).
		for len(fast.c) == cap(fast.c) {
			time.Sleep(time.Millisecond)
		}
		b.Publish(ev(0, i))
	}
	if i := <-got; i != n {
		t.Fatalf("fast subscriber got %d events, want %d", i, n)
	}
	if d := slow.Dropped(); d != n-3 {
		t.Errorf("slow subscriber dropped %d, want %d", d, n-3)
	}
	if d := fast.Dropped(); d != 0 {
		t.Errorf("fast subscriber dropped %d", d)
	}
	if d := b.Dropped(); d != n-3 {
		t.Errorf("bus dropped %d, want %d", d, n-3)
	}
	for i := range 3 {
		if e := <-slow.C(); e.Flow.ID != uint64(i) {
			t.Errorf("slow subscriber kept event %d, want %d", e.Flow.ID, i)
		}
	}
}

// Publishers, subscribers coming and going and Close race freely: no
// event is sent on a closed channel, and each publisher's events arrive in
// its order.
func TestConcurrent(t *testing.T) {
	var b Bus
	const pubs, per = 4, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var subs sync.WaitGroup
	for range 3 {
		subs.Add(1)
		go func() {
			defer subs.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := b.Subscribe(64)
				last := map[string]uint64{}
				for range 50 {
					e, ok := <-s.C()
					if !ok {
						break
					}
					if prev, seen := last[e.Reason]; seen && e.Flow.ID <= prev {
						t.Errorf("publisher %s: %d after %d", e.Reason, e.Flow.ID, prev)
					}
					last[e.Reason] = e.Flow.ID
				}
				s.Close()
				for range s.C() { // drain what was buffered
				}
			}
		}()
	}
	for p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				b.Publish(ev(p, i))
			}
		}()
	}
	wg.Wait()
	close(stop)
	// Subscribers may wait for events that no longer come: give them some.
	done := make(chan struct{})
	go func() { subs.Wait(); close(done) }()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
			b.Publish(ev(pubs, i))
			time.Sleep(time.Millisecond)
		}
	}
}

func TestPublishAllocationFree(t *testing.T) {
	var b Bus
	e := state.Event{Event: state.EventClose, Flow: &state.Flow{ID: 1}}
	if n := testing.AllocsPerRun(1000, func() { b.Publish(e) }); n > 0 {
		t.Errorf("Publish without subscribers: %v allocations", n)
	}
	s := b.Subscribe(1)
	defer s.Close()
	if n := testing.AllocsPerRun(1000, func() { b.Publish(e) }); n > 0 {
		t.Errorf("Publish to a full subscriber: %v allocations", n)
	}
}

func BenchmarkPublish(b *testing.B) {
	e := state.Event{Event: state.EventClose, Flow: &state.Flow{ID: 1}}
	b.Run("no subscribers", func(b *testing.B) {
		var bus Bus
		b.ReportAllocs()
		for b.Loop() {
			if bus.Active() {
				bus.Publish(e)
			}
		}
	})
	b.Run("one full subscriber", func(b *testing.B) {
		var bus Bus
		s := bus.Subscribe(1)
		defer s.Close()
		b.ReportAllocs()
		for b.Loop() {
			bus.Publish(e)
		}
	})
}
