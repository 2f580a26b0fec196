package gateway

import (
	"sync"
	"testing"
)

func TestDropPercent(t *testing.T) {
	m := MaxStartups{Start: 10, Rate: 30, Full: 100}
	for _, tt := range []struct{ pending, want int }{
		{0, 0}, {9, 0}, {10, 30}, {11, 30}, {55, 65}, {99, 99}, {100, 100}, {500, 100},
	} {
		if got := m.DropPercent(tt.pending); got != tt.want {
			t.Errorf("DropPercent(%d) = %d, want %d", tt.pending, got, tt.want)
		}
	}
	if got := (MaxStartups{Start: 5, Rate: 100, Full: 5}).DropPercent(4); got != 0 {
		t.Errorf("N form below N: %d", got)
	}
	if got := (MaxStartups{Start: 5, Rate: 100, Full: 5}).DropPercent(5); got != 100 {
		t.Errorf("N form at N: %d", got)
	}
	if got := (MaxStartups{Start: 5, Rate: 1, Full: 5}).DropPercent(5); got != 100 {
		t.Errorf("start == full: %d", got)
	}
}

// fixedRand returns the draws in order, and records the n asked for.
type fixedRand struct {
	draws []int
	asked []int
}

func (r *fixedRand) IntN(n int) int {
	r.asked = append(r.asked, n)
	v := r.draws[0]
	r.draws = r.draws[1:]
	return v
}

func TestStartupsAdmit(t *testing.T) {
	r := &fixedRand{}
	s := NewStartups(MaxStartups{Start: 2, Rate: 50, Full: 4}, r)
	var dones []func()
	admit := func(want bool) {
		t.Helper()
		done, ok := s.Admit()
		if ok != want {
			t.Fatalf("Admit at %d pending = %v, want %v", s.Pending(), ok, want)
		}
		if ok {
			dones = append(dones, done)
		}
	}
	admit(true) // 0 pending: no draw
	admit(true) // 1 pending: no draw
	if len(r.asked) != 0 {
		t.Fatalf("drew below start: %v", r.asked)
	}
	r.draws = []int{49, 50}
	admit(false) // 2 pending: 50%, draw 49 < 50 drops
	admit(true)  // draw 50 admits
	r.draws = []int{74, 75}
	admit(false) // 3 pending: 75%
	admit(true)
	admit(false) // 4 pending = full: dropped without a draw
	if len(r.draws) != 0 || len(r.asked) != 4 {
		t.Fatalf("draws left %v, asked %v", r.draws, r.asked)
	}
	for _, n := range r.asked {
		if n != 100 {
			t.Errorf("IntN(%d), want IntN(100)", n)
		}
	}
	if s.Pending() != 4 {
		t.Fatalf("Pending = %d", s.Pending())
	}
	dones[0]()
	dones[0]() // a second call does nothing
	if s.Pending() != 3 {
		t.Fatalf("Pending after done = %d, want 3", s.Pending())
	}
	for _, d := range dones[1:] {
		d()
	}
	admit(true)
	if s.Pending() != 1 {
		t.Fatalf("Pending = %d, want 1", s.Pending())
	}
}

func TestStartupsConcurrent(t *testing.T) {
	s := NewStartups(MaxStartups{Start: 10, Rate: 30, Full: 100}, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 100 {
				if done, ok := s.Admit(); ok {
					done()
				}
			}
		})
	}
	wg.Wait()
	if s.Pending() != 0 {
		t.Errorf("Pending = %d after all done", s.Pending())
	}
}
