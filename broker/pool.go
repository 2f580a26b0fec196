package broker

import (
	"context"
	"net"
	"sync"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// pool is a profile's SSH connections. Flows go to the least loaded one;
// ties go to the first, so light traffic keeps to one connection and opens
// no others.
type pool struct {
	b     *Broker
	p     *Profile
	log   logrus.FieldLogger
	links []*link

	mu sync.Mutex // serialises pick-and-count, so concurrent flows spread

	// secrets remembers, for reconnects, what the user typed: decrypted
	// keys and the password that worked. Only in memory, never logged.
	secretsMu sync.Mutex
	keys      map[string]ssh.Signer
	password  string
}

func newPool(b *Broker, p *Profile) *pool {
	pl := &pool{b: b, p: p, log: b.log.WithField("profile", p.Name), keys: map[string]ssh.Signer{}}
	for i := range p.Connections {
		log := pl.log
		if p.Connections > 1 {
			log = log.WithField("connection", i+1)
		}
		pl.links = append(pl.links, &link{pool: pl, index: i, log: log})
	}
	return pl
}

// acquire picks the least loaded connection and counts the flow on it.
func (pl *pool) acquire() *link {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	best := pl.links[0]
	bestLoad := best.load()
	for _, l := range pl.links[1:] {
		if n := l.load(); n < bestLoad {
			best, bestLoad = l, n
		}
	}
	best.addFlow()
	return best
}

func (pl *pool) dial(ctx context.Context, addr string) (net.Conn, error) {
	l := pl.acquire()
	c, err := l.dial(ctx, addr)
	if err != nil {
		l.removeFlow()
		return nil, err
	}
	return c, nil
}

// close ends the pool's connections; see link.close.
func (pl *pool) close() []<-chan struct{} {
	var closed []<-chan struct{}
	for _, l := range pl.links {
		if c := l.close(); c != nil {
			closed = append(closed, c)
		}
	}
	return closed
}
