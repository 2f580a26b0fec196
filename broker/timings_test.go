package broker

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/shunt-dev/shunt/broker/brokertest"
)

// timingsRecorder is a Timings that keeps what it is told.
type timingsRecorder struct {
	mu         sync.Mutex
	handshakes []string
	opens      []string
	durations  []time.Duration
}

func (r *timingsRecorder) Handshake(profile string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handshakes = append(r.handshakes, profile)
	r.durations = append(r.durations, d)
}

func (r *timingsRecorder) ChannelOpened(profile string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opens = append(r.opens, profile)
	r.durations = append(r.durations, d)
}

func (r *timingsRecorder) got() (handshakes, opens []string, durations []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.handshakes), slices.Clone(r.opens), slices.Clone(r.durations)
}

// The Timings hook hears of each SSH connection that comes up and each
// channel the server opens, under the profile's name, also for a
// host-from-application server's; not of a channel the server refused,
// nor of a connection that failed.
func TestTimingsHook(t *testing.T) {
	f := newFixture(t)
	rec := &timingsRecorder{}
	b := f.broker(t, func(_ *Profile, o *Options) { o.Timings = rec })
	target := brokertest.Echo(t)
	for range 2 {
		c, err := b.Dial(context.Background(), "gw", target)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "timed")
		c.Close()
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	if _, err := b.Dial(context.Background(), "gw", dead); err == nil {
		t.Fatal("a channel to a closed port opened")
	}
	// A host-from-application server: counted under its profile.
	c, err := b.DialVia(context.Background(), "gw", "127.0.0.1", target)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "via")
	c.Close()
	if _, err := b.DialVia(context.Background(), "gw", "127.0.0.2", target); err == nil {
		t.Fatal("a connection to a server nobody runs came up")
	}

	hs, opens, ds := rec.got()
	if want := []string{"gw", "gw"}; !slices.Equal(hs, want) {
		t.Errorf("handshakes %v, want %v (the profile's connection, then the server's)", hs, want)
	}
	if want := []string{"gw", "gw", "gw"}; !slices.Equal(opens, want) {
		t.Errorf("channel opens %v, want %v (two through the profile, one through the server)", opens, want)
	}
	for _, d := range ds {
		if d <= 0 {
			t.Errorf("a duration of %v", d)
		}
	}
}
