//go:build unix

package netstack

import (
	"context"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/netstack/netstacktest"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/tun"
)

// answerOnce is a fake tunnel whose upstreams read a request, answer it in
// one write and close, as the flow-rate bench's server does.
type answerOnce struct{}

func (answerOnce) dial() (net.Conn, error) {
	a, b := net.Pipe()
	go func() {
		buf := make([]byte, 512)
		if _, err := b.Read(buf); err == nil {
			b.Write([]byte("HTTP/1.0 200 OK\r\n\r\nok"))
		}
		b.Close()
	}()
	return a, nil
}

func (u answerOnce) Dial(context.Context, string, string) (net.Conn, error) { return u.dial() }
func (u answerOnce) DialVia(context.Context, string, string, string) (net.Conn, error) {
	return u.dial()
}
func (u answerOnce) DialContext(context.Context, string, string) (net.Conn, error) {
	return u.dial()
}

// BenchmarkFlowSetUp opens flows through the stack and the router, eight
// at a time as the bench's flow-rate test does: connect, one request, the
// answer, both ends close. One op is one flow; the TUN is in memory and
// the application a second gVisor stack, so this is shunt's own work per
// flow without the system calls.
func BenchmarkFlowSetUp(b *testing.B) {
	log, _ := test.NewNullLogger()
	r := router.New([]router.Rule{{Name: "all", Action: router.Tunnel, Profile: "gw"}},
		router.Options{Tunnels: answerOnce{}, Direct: answerOnce{}, Log: log})
	dev := tun.NewMemory(1500, 8)
	app := netstacktest.NewAppHost(b, dev, 1500)
	s, err := New(dev, r.StackHandler(), Options{MTU: 1500})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const workers = 8
	var next sync.Mutex
	left := b.N
	var wg sync.WaitGroup
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			req := []byte("GET / HTTP/1.0\r\n\r\n")
			buf := make([]byte, 512)
			for port := uint16(1); ; port++ {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 9, byte(w), byte(port)}), 80)
				c, err := app.Dial(ctx, dst)
				if err != nil {
					b.Error(err)
					return
				}
				c.Write(req)
				for {
					if _, err := c.Read(buf); err != nil {
						if err != io.EOF {
							b.Error(err)
						}
						break
					}
				}
				c.Close()
			}
		}(w)
	}
	wg.Wait()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := syscall.TimevalToNsec(ru1.Utime) - syscall.TimevalToNsec(ru0.Utime) + syscall.TimevalToNsec(ru1.Stime) - syscall.TimevalToNsec(ru0.Stime)
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	r.Wait()
}
