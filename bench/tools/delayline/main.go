//go:build linux

// Command delayline adds round-trip time between two network namespaces
// where the kernel has no netem qdisc. It creates one TUN device in each
// namespace and moves packets between them, holding those that go from
// the first namespace to the second for -delay: the RTT of every path
// routed through the pair grows by that much, as with netem on the first
// side's egress. Its queue is as long as -limit packets (netem's
// default is 1,000, which would drop at the rates measured here).
//
//	delayline -a NS:DEV -b NS:DEV -delay 20ms [-mtu 1500] [-limit 100000]
//
// It prints "ready" once both devices exist (down, without addresses:
// the caller configures them) and runs until SIGINT or SIGTERM; the
// devices go with it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	a := flag.String("a", "", "NS:DEV, the side whose outgoing packets are delayed")
	b := flag.String("b", "", "NS:DEV, the other side")
	delay := flag.Duration("delay", 20*time.Millisecond, "time added to every packet from a to b")
	mtu := flag.Int("mtu", 1500, "MTU of both devices")
	limit := flag.Int("limit", 100000, "packets held at most; more are dropped")
	flag.Parse()
	if *a == "" || *b == "" || *delay < 0 || *mtu < 576 || *limit < 1 {
		flag.Usage()
		os.Exit(2)
	}
	fa, err := openTUN(*a, *mtu)
	if err != nil {
		fatal(err)
	}
	fb, err := openTUN(*b, *mtu)
	if err != nil {
		fatal(err)
	}
	var dropped atomic.Int64
	go delayed(fa, fb, *delay, *mtu, *limit, &dropped)
	go straight(fb, fa, *mtu)
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if n := dropped.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "delayline: dropped %d packets (queue full at %d)\n", n, *limit)
	}
}

type packet struct {
	b   []byte
	due time.Time
}

// delayed copies packets from in to out, each one delay after it arrived,
// in order.
func delayed(in, out *os.File, delay time.Duration, mtu, limit int, dropped *atomic.Int64) {
	q := make(chan packet, limit)
	free := make(chan []byte, limit)
	go func() {
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			_, _ = out.Write(p.b) // a lost packet is TCP's to retransmit
			free <- p.b[:cap(p.b)]
		}
	}()
	for {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, mtu)
		}
		n, err := in.Read(buf)
		if err != nil {
			fatal(err)
		}
		select {
		case q <- packet{b: buf[:n], due: time.Now().Add(delay)}:
		default:
			dropped.Add(1)
		}
	}
}

// straight copies packets from in to out as they come.
func straight(in, out *os.File, mtu int) {
	buf := make([]byte, mtu)
	for {
		n, err := in.Read(buf)
		if err != nil {
			fatal(err)
		}
		_, _ = out.Write(buf[:n])
	}
}

// openTUN creates the TUN device DEV in the network namespace NS (a name
// under /var/run/netns, as ip netns makes them) and returns its file. The
// device belongs to the namespace it was created in, whatever namespace
// reads and writes it afterwards.
func openTUN(spec string, mtu int) (*os.File, error) {
	ns, dev, ok := strings.Cut(spec, ":")
	if !ok || ns == "" || dev == "" || len(dev) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("device %q: want NS:DEV", spec)
	}
	runtime.LockOSThread() // setns changes this thread only
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	f, err := createTUN(dev, mtu)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// This thread is in the wrong namespace; do not let it run anything else.
		fatal(fmt.Errorf("leave namespace %s: %w", ns, err))
	}
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	return f, nil
}

func createTUN(dev string, mtu int) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN %s: %w", dev, err)
	}
	if err := setMTU(dev, mtu); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil { // for Go's poller
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+dev), nil
}

func setMTU(dev string, mtu int) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("set MTU of %s: %w", dev, err)
	}
	return nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "delayline:", err)
	os.Exit(1)
}
