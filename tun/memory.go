package tun

import (
	"errors"
	"os"
	"sync"
)

// Memory is an in-memory Device. What the system side sends with Inject is
// what the stack reads; what the stack writes arrives on Outbound. Tests use
// it to put a second network stack (the "application host") on the other end.
type Memory struct {
	mtu   int
	batch int

	in  chan []byte // system → device reader
	out chan []byte // device writer → system

	closeOnce sync.Once
	closed    chan struct{}
}

var _ Device = (*Memory)(nil)

// NewMemory returns an in-memory device with the given MTU that reads and
// writes up to batch packets at a time.
func NewMemory(mtu, batch int) *Memory {
	if batch < 1 {
		batch = 1
	}
	return &Memory{
		mtu:    mtu,
		batch:  batch,
		in:     make(chan []byte, 1024),
		out:    make(chan []byte, 1024),
		closed: make(chan struct{}),
	}
}

// Inject queues one packet for the device's reader. It copies pkt and returns
// false if the device is closed.
func (m *Memory) Inject(pkt []byte) bool {
	p := append([]byte(nil), pkt...)
	select {
	case <-m.closed:
		return false
	default:
	}
	select {
	case m.in <- p:
		return true
	case <-m.closed:
		return false
	}
}

// Outbound delivers every packet written to the device, in order.
func (m *Memory) Outbound() <-chan []byte { return m.out }

// Read implements Device. It blocks for the first packet and then takes
// whatever else is already queued, up to len(bufs).
func (m *Memory) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	var p []byte
	select {
	case p = <-m.in:
	case <-m.closed:
		return 0, os.ErrClosed
	}
	n := 0
	for {
		if len(p) > len(bufs[n])-offset {
			return n, errors.New("tun: packet larger than read buffer")
		}
		sizes[n] = copy(bufs[n][offset:], p)
		n++
		if n == len(bufs) {
			return n, nil
		}
		select {
		case p = <-m.in:
		default:
			return n, nil
		}
	}
}

// Write implements Device. Packets are copied.
func (m *Memory) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		p := append([]byte(nil), b[offset:]...)
		select {
		case <-m.closed:
			return i, os.ErrClosed
		default:
		}
		select {
		case m.out <- p:
		case <-m.closed:
			return i, os.ErrClosed
		}
	}
	return len(bufs), nil
}

// BatchSize implements Device.
func (m *Memory) BatchSize() int { return m.batch }

// MTU implements Device.
func (m *Memory) MTU() (int, error) { return m.mtu, nil }

// Name implements Device.
func (m *Memory) Name() (string, error) { return "memtun", nil }

// Close implements Device.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() { close(m.closed) })
	return nil
}
