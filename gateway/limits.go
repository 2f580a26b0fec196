package gateway

import (
	"math/rand/v2"
	"sync"
)

// Rand is the random source of early drop: IntN returns a number in
// [0, n). *rand.Rand of math/rand/v2 fits.
type Rand interface {
	IntN(n int) int
}

// DropPercent is the chance, in percent, that a new connection is dropped
// while pending connections are already unauthenticated, as sshd's
// MaxStartups: 0 below Start; from Start it rises linearly from Rate to
// 100 at Full, and is 100 from Full on.
func (m MaxStartups) DropPercent(pending int) int {
	switch {
	case pending < m.Start:
		return 0
	case pending >= m.Full || m.Rate >= 100:
		return 100
	}
	return m.Rate + (100-m.Rate)*(pending-m.Start)/(m.Full-m.Start)
}

// Startups counts unauthenticated connections and decides which new ones
// to drop early. Safe for concurrent use.
type Startups struct {
	limit MaxStartups
	mu    sync.Mutex
	rand  Rand
	n     int
}

// NewStartups limits unauthenticated connections to limit, drawing from r
// (nil: a source of its own).
func NewStartups(limit MaxStartups, r Rand) *Startups {
	if r == nil {
		r = globalRand{}
	}
	return &Startups{limit: limit, rand: r}
}

// globalRand draws from math/rand/v2's automatically seeded source.
type globalRand struct{}

func (globalRand) IntN(n int) int { return rand.IntN(n) }

// Admit decides on a new connection. If it is admitted, it counts as
// unauthenticated until done is called (when it authenticates or
// closes; further calls do nothing). If not, the caller closes it at
// once, before the SSH handshake.
func (s *Startups) Admit() (done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.limit.DropPercent(s.n)
	if p >= 100 || (p > 0 && s.rand.IntN(100) < p) {
		return nil, false
	}
	s.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.n--
			s.mu.Unlock()
		})
	}, true
}

// Pending is the number of admitted connections not yet done.
func (s *Startups) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
