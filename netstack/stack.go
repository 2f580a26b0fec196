// Package netstack terminates captured TCP flows in gVisor's userspace stack.
//
// Packets come from a Device (the TUN). Every TCP SYN, to any address, is
// handed to a Handler before the handshake completes ("dial before accept"):
// the application's connect succeeds only once the handler has its upstream,
// and gets a RST, a refused connection, when the handler gives up. A SYN to
// a fake address (Options.Hosts) carries the name the address stands for.
//
// The stack also serves on addresses routed into the TUN that belong to
// shunt itself (its DNS server): ListenTCP and ListenUDP. Anything else
// that is not TCP is answered with an ICMP "destination unreachable".
package netstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/shunt-dev/shunt/internal/logs"
)

// Handler receives each new TCP flow before its handshake completes.
type Handler interface {
	// HandleTCP sets up the flow from src (the application) to dst (where
	// the application connected). It calls accept at most once, after its
	// upstream is ready: accept completes the application's handshake and
	// returns the application's side of the connection, which HandleTCP
	// may keep using after it returns (a flow needs no goroutine of its own
	// while it is quiet). If HandleTCP returns without calling accept, the
	// application's connect fails with "connection refused". accept fails
	// when the application does not complete the handshake within
	// Options.HandshakeTimeout (it gave up, or the SYN's source was
	// spoofed): HandleTCP must then let go of its upstream. ctx ends when
	// the stack closes; Close resets the flows still open.
	//
	// host is the name the application asked for when dst is a fake
	// address (Options.Hosts), "" otherwise: dst is then no real address,
	// and the flow's upstream is host at dst's port. A SYN to a fake
	// address that no name holds never reaches HandleTCP (it is refused).
	//
	// carry, when not nil, is the flow's own work that needs a goroutine
	// (the splice's upstream direction, blocked in a read of the
	// upstream). The stack runs it next, on the same goroutine: a set-up
	// worker whose stack the handshake has grown already, so the flow
	// starts with no goroutine hand-off and no stack growth. The set-up is
	// over by then: carry counts against no MaxInFlight, Close does not
	// wait for it, and it must end on its own once the flow ends (Close
	// resets the application's side of every flow).
	HandleTCP(ctx context.Context, src, dst netip.AddrPort, host string, accept func() (net.Conn, error)) (carry func())
}

// Hosts tells which name a fake address stands for: shunt's DNS server
// answers names with addresses from its fake ranges, and a flow to one of
// them goes to the name.
type Hosts interface {
	// Host returns the name addr was handed out for, and whether addr
	// lies in a fake range at all. fake with an empty name is an address
	// of a fake range that no name holds (the application kept an answer
	// from before the table was reset). addr is never an IPv4-mapped IPv6
	// address. Host is called once for each SYN, on the flow's set-up
	// goroutine, and must be safe for concurrent use.
	Host(addr netip.Addr) (name string, fake bool)
}

// Options tune the stack. Zero values take the defaults.
type Options struct {
	// MTU of the device. It bounds the segments the stack sends and the
	// MSS it announces.
	MTU int
	// MaxInFlight bounds the handshakes waiting on the Handler at once;
	// SYNs beyond it are refused at once (RST). A dropped SYN, as gVisor's
	// forwarder does it, would make the application retransmit after 1 s,
	// 3 s, 7 s... into a queue that a destination that does not answer
	// keeps full: refused, it fails fast and says why. The Handler bounds
	// its set-ups more finely below this (router/limit.go).
	MaxInFlight int
	// HandshakeTimeout bounds the application's side of the handshake:
	// from accept's SYN-ACK to the application's ACK. An application on
	// this machine answers at once (gVisor resends a lost SYN-ACK after 1
	// and 3 s); a SYN with a spoofed source never answers, and without
	// the bound gVisor would hold it, and the Handler's upstream with it,
	// for its two minutes of SYN-ACK retransmissions.
	HandshakeTimeout time.Duration
	// Hosts finds the names of fake addresses; nil when there are no fake
	// addresses (every flow's host is then "").
	Hosts Hosts
	// Log receives the stack's own errors. Flows are logged by the Handler.
	Log logrus.FieldLogger
}

const (
	// defaultMaxInFlight is above the router's own limits (4096 set-ups
	// in all), which refuse first and more finely; this is a backstop for
	// any Handler.
	defaultMaxInFlight      = 8192
	defaultHandshakeTimeout = 5 * time.Second
	// forwarderSlack is how far gVisor's own cap on pending SYNs sits
	// above MaxInFlight: gVisor counts a SYN from its arrival until
	// Complete, and a refused SYN is completed (reset) by its goroutine a
	// moment after, so a burst briefly counts more than MaxInFlight. Only
	// beyond MaxInFlight*forwarderSlack does gVisor drop SYNs.
	forwarderSlack = 2
	// refusalLogEvery spaces the warnings about refused SYNs (over
	// MaxInFlight, or to a fake address no name holds).
	refusalLogEvery = 10 * time.Second
	// TCP buffer ranges: a captured flow is as fast as its upstream (an SSH
	// channel), so large buffers mostly absorb its bursts. The stack grows
	// each flow's receive buffer from the default only when the flow needs it.
	//
	// The send buffer stays at 1 MiB: gVisor tunes it to twice the
	// congestion window, which with the TUN's 64 KiB segments and no loss
	// passes 4 MiB within a second, and a flow whose application stops
	// reading then holds all of it (with the SSH window, 6 MiB a flow).
	// The TUN's round trip is tens of microseconds: 1 MiB in flight
	// covers it at any rate an SSH channel reaches.
	tcpBufMin     = 4 << 10
	tcpRcvDefault = 1 << 20
	tcpRcvMax     = 8 << 20
	tcpSndDefault = 1 << 20
	tcpSndMax     = 1 << 20
	nicID         = 1
	// closeGrace bounds how long Close waits for the flows' handlers.
	closeGrace = 5 * time.Second
)

// Stack is a running gVisor stack on a device.
type Stack struct {
	s       *stack.Stack
	link    *linkEndpoint
	handler Handler
	hosts   Hosts
	log     logrus.FieldLogger

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards closing and flows.Add
	closing bool
	flows   sync.WaitGroup
	workers *workers

	maxInFlight      int64
	handshakeTimeout time.Duration
	inFlight         atomic.Int64 // set-ups between forward and their end
	overLimit        rateLog      // SYNs refused over maxInFlight
	unassigned       rateLog      // SYNs refused to fake addresses no name holds

	svc services // ListenTCP and ListenUDP

	errOnce sync.Once
	err     chan error
}

// New starts a stack on dev that hands every TCP flow to h. The stack owns
// dev from then on and closes it in Close.
func New(dev Device, h Handler, opts Options) (*Stack, error) {
	if opts.MTU <= 0 || opts.MTU > maxPacket {
		return nil, fmt.Errorf("netstack: MTU %d out of range 1..%d", opts.MTU, maxPacket)
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = defaultMaxInFlight
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = defaultHandshakeTimeout
	}
	if opts.Log == nil {
		l := logrus.New()
		l.Out = io.Discard
		opts.Log = l
	}
	s := stack.New(stack.Options{
		NetworkProtocols: []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		// UDP serves ListenUDP only: the link hands the stack no other
		// UDP packet (link.go's deliver).
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	ctx, cancel := context.WithCancel(context.Background())
	n := &Stack{
		s:       s,
		link:    newLinkEndpoint(dev, uint32(opts.MTU)),
		handler: h,
		hosts:   opts.Hosts,
		log:     opts.Log,
		ctx:     ctx,
		cancel:  cancel,
		err:     make(chan error, 1),
		workers: newWorkers(),

		maxInFlight:      int64(opts.MaxInFlight),
		handshakeTimeout: opts.HandshakeTimeout,
	}
	if err := n.configure(opts); err != nil {
		cancel()
		s.Destroy()
		return nil, err
	}
	n.link.start(n.fail)
	return n, nil
}

func (n *Stack) configure(opts Options) error {
	s := n.s
	sack := tcpip.TCPSACKEnabled(true)
	moderate := tcpip.TCPModerateReceiveBufferOption(true)
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcpBufMin, Default: tcpRcvDefault, Max: tcpRcvMax}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcpBufMin, Default: tcpSndDefault, Max: tcpSndMax}
	// No TIME-WAIT. It guards against old segments arriving late, which
	// cannot happen on the TUN: it is a local link that neither delays nor
	// duplicates. And it would do harm: gVisor hands a new SYN that meets
	// a TIME-WAIT endpoint only to a listening endpoint, and the forwarder
	// is none, so when the kernel reused a client port within the 60 s
	// default, the application's connect timed out.
	timeWait := tcpip.TCPTimeWaitTimeoutOption(0)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &moderate, &rcv, &snd, &timeWait} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("netstack: set TCP option %T: %v", opt, err)
		}
	}
	// The forwarder is installed before the NIC exists, so no SYN can
	// arrive without a handler.
	fwd := tcp.NewForwarder(s, 0, opts.MaxInFlight*forwarderSlack, n.forward)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, fwd.HandlePacket)
	if err := s.CreateNIC(nicID, n.link); err != nil {
		return fmt.Errorf("netstack: create NIC: %v", err)
	}
	// Promiscuous: accept packets for any destination address. Spoofing:
	// answer from that address. Together they let one NIC stand in for
	// every captured host.
	if err := s.SetPromiscuousMode(nicID, true); err != nil {
		return fmt.Errorf("netstack: promiscuous mode: %v", err)
	}
	if err := s.SetSpoofing(nicID, true); err != nil {
		return fmt.Errorf("netstack: spoofing: %v", err)
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: header.IPv4EmptySubnet, NIC: nicID},
		{Destination: header.IPv6EmptySubnet, NIC: nicID},
	})
	return nil
}

// forward runs in its own goroutine for each SYN the forwarder accepts, and
// hands the flow's set-up to a worker, or refuses it (RST) when
// MaxInFlight set-ups are running.
func (n *Stack) forward(req *tcp.ForwarderRequest) {
	if n.inFlight.Add(1) > n.maxInFlight {
		n.inFlight.Add(-1)
		// Logged before the RST: the log has the warning by the time
		// the application sees its refusal.
		if count, warn := n.overLimit.tick(); warn {
			n.log.WithFields(logrus.Fields{"in_flight": n.maxInFlight, "refused": count}).
				Warn("refusing new flows: the most set-ups the stack takes at once are in flight")
		}
		req.Complete(true)
		return
	}
	n.mu.Lock()
	if n.closing {
		n.mu.Unlock()
		n.inFlight.Add(-1)
		req.Complete(true)
		return
	}
	n.flows.Add(1)
	n.mu.Unlock()
	n.workers.run(func() func() { return n.setup(req) })
}

// rateLog spaces warnings about a kind of event: the first of a burst,
// then at most one every refusalLogEvery, with the count since the last.
type rateLog struct {
	count  atomic.Int64 // events since the last warning
	warned atomic.Int64 // when that warning was (UnixNano)
}

// tick counts an event, and says whether to warn now, and about how many
// events.
func (l *rateLog) tick() (count int64, warn bool) {
	count = l.count.Add(1)
	now := time.Now().UnixNano()
	last := l.warned.Load()
	if now-last < int64(refusalLogEvery) || !l.warned.CompareAndSwap(last, now) {
		return 0, false
	}
	l.count.Add(-count)
	return count, true
}

// refuseUnassigned logs a SYN refused because its fake destination is
// assigned to no name: at debug for each, as a warning for the first of a
// burst and then every refusalLogEvery.
func (n *Stack) refuseUnassigned(src, dst netip.AddrPort) {
	debug := logs.Enabled(n.log, logrus.DebugLevel)
	count, warn := n.unassigned.tick()
	if !debug && !warn {
		return
	}
	why := fmt.Sprintf("fake address %v is not assigned to a name: the application cached an answer from before the table was reset", dst.Addr())
	if debug {
		n.log.WithFields(logrus.Fields{"src": src.String(), "dst": dst.String()}).Debug("flow refused: " + why)
	}
	if warn {
		n.log.WithFields(logrus.Fields{"dst": dst.String(), "refused": count}).
			Warn("refusing flows to fake addresses that no name holds (" + why + "); they get a refused connection until the application looks the name up again")
	}
}

// setup completes the handshake of a flow, if the handler accepts it, and
// returns what the handler left to carry the flow on (Handler.HandleTCP).
func (n *Stack) setup(req *tcp.ForwarderRequest) (carry func()) {
	defer n.flows.Done()
	defer n.inFlight.Add(-1)
	id := req.ID()
	src := netip.AddrPortFrom(addrFrom(id.RemoteAddress), id.RemotePort)
	dst := netip.AddrPortFrom(addrFrom(id.LocalAddress), id.LocalPort)
	var host string
	if n.hosts != nil {
		name, fake := n.hosts.Host(dst.Addr().Unmap())
		if fake && name == "" {
			// No name to go to: the handler could only dial the fake
			// address itself, which leads back here. Said before the
			// RST goes out, so the log has it once the application
			// sees its connect refused.
			n.refuseUnassigned(src, dst)
			req.Complete(true)
			return nil
		}
		if fake {
			host = name
		}
	}
	completed := false
	accept := func() (net.Conn, error) {
		if completed {
			return nil, errors.New("netstack: flow already accepted")
		}
		completed = true
		var wq waiter.Queue
		// gVisor's CreateEndpoint waits on wq for the handshake to end,
		// for as long as its SYN-ACK retransmissions last; a wake-up
		// before that makes it give the handshake up (it finds the
		// endpoint not connected, closes it and returns an error).
		var expired atomic.Bool
		bound := time.AfterFunc(n.handshakeTimeout, func() {
			expired.Store(true)
			wq.Notify(waiter.WritableEvents)
		})
		ep, err := req.CreateEndpoint(&wq)
		bound.Stop()
		if err != nil {
			req.Complete(true)
			if expired.Load() {
				return nil, fmt.Errorf("netstack: %v did not complete the handshake within %v (a SYN from a spoofed address, or an application that gave up)", src, n.handshakeTimeout)
			}
			return nil, fmt.Errorf("netstack: complete handshake with %v: %v", src, err)
		}
		req.Complete(false)
		// The splice writes what it read at once, in large pieces: Nagle
		// would only delay the last small piece of every answer.
		ep.SocketOptions().SetDelayOption(false)
		return &conn{TCPConn: gonet.NewTCPConn(&wq, ep), ep: ep, wq: &wq}, nil
	}
	carry = n.handler.HandleTCP(n.ctx, src, dst, host, accept)
	if !completed {
		req.Complete(true)
	}
	return carry
}

// conn is the application's side of a captured flow. Besides net.Conn it
// reads without blocking and says when data arrives (TryRead,
// NotifyReadable), so the router needs no goroutine waiting on a quiet
// flow.
type conn struct {
	*gonet.TCPConn
	ep     tcpip.Endpoint
	wq     *waiter.Queue
	closed atomic.Bool
	// sendBefore and recvBefore are the buffer sizes from before a cut
	// (ShrinkSend, ShrinkReceive); 0 while none is in force.
	sendBefore, recvBefore atomic.Int64
}

// Abort resets the flow: the application sees "connection reset by peer",
// not a clean end of stream. Used when the upstream died mid-flow.
func (c *conn) Abort() {
	c.closed.Store(true)
	c.ep.Abort()
	c.TCPConn.Close()
}

// Close closes the flow (FIN to the application).
func (c *conn) Close() error {
	c.closed.Store(true)
	return c.TCPConn.Close()
}

// TryRead reads what the application has sent without waiting for more:
// (0, nil) when nothing is there yet, io.EOF once the application closed
// its side, net.ErrClosed once this side was closed.
func (c *conn) TryRead(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	w := tcpip.SliceWriter(p)
	res, err := c.ep.Read(&w, tcpip.ReadOptions{})
	switch err.(type) {
	case nil:
		if res.Count > 0 {
			c.ep.ModerateRecvBuf(res.Count)
		}
		return res.Count, nil
	case *tcpip.ErrWouldBlock:
		return 0, nil
	case *tcpip.ErrClosedForReceive:
		if c.closed.Load() {
			return 0, net.ErrClosed
		}
		return 0, io.EOF
	}
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errors.New(err.String())}
}

// cutBuffer is what a stalled flow's send or receive buffer is cut to: a
// few segments of a slow reader's, little held for one that reads none.
const cutBuffer = 16 << 10

// Buffered is what the flow's buffers hold at most: send is the send
// buffer's size (the queue is that full when a writer blocks; while a cut
// is in force, the size before it, which the queue may still hold), and
// receive the bytes the application sent that were not read yet.
func (c *conn) Buffered() (send, receive int64) {
	send = c.sendBefore.Load()
	if send == 0 {
		send = c.ep.SocketOptions().GetSendBufferSize()
	}
	if n, err := c.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
		receive = int64(n)
	}
	return send, receive
}

// ShrinkSend cuts the send buffer to cutBuffer, for an application that
// stopped reading: what is queued stays until it reads or the flow ends,
// but no more is taken until the queue is below the cut. false puts back
// the size it had. Either way gVisor then no longer tunes the size itself
// (as setting SO_SNDBUF does on Linux).
func (c *conn) ShrinkSend(cut bool) {
	ops := c.ep.SocketOptions()
	if cut {
		if c.sendBefore.Load() == 0 {
			c.sendBefore.Store(ops.GetSendBufferSize())
			ops.SetSendBufferSize(cutBuffer, true)
		}
		return
	}
	if before := c.sendBefore.Swap(0); before != 0 {
		ops.SetSendBufferSize(before, true)
	}
}

// ShrinkReceive cuts the receive buffer to cutBuffer, for a far side that
// stopped reading: the window the application sees closes, and its data
// waits in its own socket instead of in shunt. false puts back the size it
// had; gVisor's moderation of the size stays off for the flow.
func (c *conn) ShrinkReceive(cut bool) {
	ops := c.ep.SocketOptions()
	if cut {
		if c.recvBefore.Load() == 0 {
			c.recvBefore.Store(ops.GetReceiveBufferSize())
			ops.SetReceiveBufferSize(cutBuffer, true)
		}
		return
	}
	if before := c.recvBefore.Swap(0); before != 0 {
		ops.SetReceiveBufferSize(before, true)
	}
}

// NotifyReadable calls f whenever data, the end of the stream or an error
// may have arrived; f runs on the stack's goroutine and must not block. The
// returned function stops the notifications.
func (c *conn) NotifyReadable(f func()) (stop func()) {
	e := waiter.NewFunctionEntry(waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr, func(waiter.EventMask) { f() })
	c.wq.EventRegister(&e)
	return func() { c.wq.EventUnregister(&e) }
}

func addrFrom(a tcpip.Address) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.AsSlice())
	return ip
}

func (n *Stack) fail(err error) {
	n.errOnce.Do(func() { n.err <- err })
}

// Err delivers the device's read error if the device fails while the stack
// runs (for example when the TUN is removed under it).
func (n *Stack) Err() <-chan error { return n.err }

// Close stops the stack: it closes the services (ListenTCP, ListenUDP),
// cancels the handlers' context, resets every flow, closes the device, and
// waits for the handlers and the packet pumps to return.
func (n *Stack) Close() error {
	n.mu.Lock()
	n.closing = true
	n.mu.Unlock()
	n.closeServices()
	n.cancel()
	// Stop the packet pumps first: nothing then enters the stack while
	// it tears down (a segment arriving during Destroy could deadlock
	// on the stack's route lock).
	n.link.close()
	err := n.link.dev.Close()
	n.link.wg.Wait()
	n.s.Close()
	// A handler blocked in a handshake that can no longer complete gives
	// up on its own; do not hold shutdown hostage to it.
	done := make(chan struct{})
	go func() { n.flows.Wait(); close(done) }()
	n.workers.close()
	select {
	case <-done:
		n.workers.wait() // they end as soon as their set-up has returned
	case <-time.After(closeGrace):
		n.log.Warn("some flows did not end within the shutdown grace period")
	}
	n.s.Destroy()
	return err
}
