package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// freezableConn is a transport whose reads can be stopped, as if the
// path to the server had gone, and whose local address can be one the
// machine does not have.
type freezableConn struct {
	net.Conn
	local net.Addr // nil: the real one

	mu     sync.Mutex
	frozen chan struct{} // non-nil while frozen: reads wait for it
	// reading: a Read is under way (it has not returned data yet);
	// began is signalled when a Read begins.
	reading bool
	began   chan struct{}
}

// Read drops what arrives while frozen: a read already waiting when
// freeze is called returns nothing either.
func (c *freezableConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	c.reading = true
	if c.began != nil {
		close(c.began)
		c.began = nil
	}
	c.mu.Unlock()
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	f := c.frozen
	c.reading = f != nil
	c.mu.Unlock()
	if f != nil {
		<-f
		return 0, io.ErrClosedPipe
	}
	return n, err
}

// freeze makes the server seem silent from now on. It returns once what
// the reader had before is accounted for: bytes a Read returned just
// before are stamped as read (the broker's reader does so before its next
// Read), so that nothing read before the freeze counts as an answer to a
// check after it.
func (c *freezableConn) freeze() {
	c.mu.Lock()
	c.frozen = make(chan struct{})
	var wait chan struct{}
	if !c.reading {
		wait = make(chan struct{})
		c.began = wait
	}
	c.mu.Unlock()
	if wait != nil {
		<-wait
	}
}

func (c *freezableConn) Close() error {
	c.mu.Lock()
	if c.frozen != nil {
		select {
		case <-c.frozen:
		default:
			close(c.frozen)
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

func (c *freezableConn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

type freezableDialer struct {
	local net.Addr
	mu    sync.Mutex
	conns []*freezableConn
}

func (d *freezableDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	fc := &freezableConn{Conn: c, local: d.local}
	d.mu.Lock()
	d.conns = append(d.conns, fc)
	d.mu.Unlock()
	return fc, nil
}

func (d *freezableDialer) last() *freezableConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[len(d.conns)-1]
}

// A healthy connection survives CheckNow, and its flow goes on.
func TestCheckNowKeepsHealthy(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := b.CheckNow("test"); n != 0 {
		t.Fatalf("CheckNow replaced %d healthy connections", n)
	}
	roundTrip(t, c, "still there")
	if n := f.srv.Logins.Load(); n != 1 {
		t.Errorf("%d logins, want 1", n)
	}
}

// A connection whose server no longer answers is replaced within the
// bound, its flow reset (ErrConnectionLost), and the next flow connects
// anew.
func TestCheckNowReplacesSilent(t *testing.T) {
	f := newFixture(t)
	d := &freezableDialer{}
	b := f.broker(t, func(p *Profile, o *Options) {
		o.Dialer = d
		// Only CheckNow notices, within the interval (its bound).
		p.KeepaliveInterval, p.KeepaliveCount = time.Second, 1000
	})
	target := brokertest.Echo(t)
	c, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c, "before")
	d.last().freeze()
	if n := b.CheckNow("test"); n != 1 {
		t.Fatalf("CheckNow replaced %d connections, want 1", n)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("the flow's read: %v, want ErrConnectionLost", err)
	}
	c2, err := b.Dial(context.Background(), "gw", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	roundTrip(t, c2, "after")
	if n := f.srv.Logins.Load(); n != 2 {
		t.Errorf("%d logins, want 2", n)
	}
}

// A connection whose local address is gone from the machine is replaced
// at once, without waiting for a keepalive.
func TestCheckNowLocalAddressGone(t *testing.T) {
	f := newFixture(t)
	// 192.0.2.0/24 is for documentation: no machine has it.
	d := &freezableDialer{local: &net.TCPAddr{IP: net.ParseIP("192.0.2.77"), Port: 40000}}
	b := f.broker(t, func(p *Profile, o *Options) { o.Dialer = d })
	c, err := b.Dial(context.Background(), "gw", brokertest.Echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n := b.CheckNow("test"); n != 1 {
		t.Fatalf("CheckNow replaced %d connections, want 1", n)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("the flow's read: %v, want ErrConnectionLost", err)
	}
	st := b.Status()
	if len(st) != 1 || st[0].Error == "" {
		t.Errorf("status %+v: want the reason as the last error", st)
	}
}

// Without connections CheckNow does nothing, and returns at once.
func TestCheckNowNoConnections(t *testing.T) {
	f := newFixture(t)
	b := f.broker(t)
	if n := b.CheckNow("test"); n != 0 {
		t.Fatalf("CheckNow = %d", n)
	}
	if n := f.srv.Logins.Load(); n != 0 {
		t.Errorf("%d logins: CheckNow must not connect", n)
	}
}
