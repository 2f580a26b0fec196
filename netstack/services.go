package netstack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Services are shunt's own servers on the TUN side (its DNS server), on
// addresses that the system routes into the TUN but that are not the
// device's: a packet to them comes to this stack like a captured flow's.
//
// Each service's address is added to the NIC while a service uses it, so
// gVisor's endpoints can bind to it. gVisor hands a segment to an endpoint
// bound to its destination before it asks the TCP forwarder (the
// transport demuxer first, then the protocol's default handler: nic.go's
// deliverTransportPacket), so a SYN to a service's port reaches the
// listener, never the Handler. A SYN to another port of that address is a
// captured flow as any other. UDP packets reach the stack only when they
// go to a UDP service (link.go's deliver); any other UDP packet keeps its
// ICMP "port unreachable".

// services are the stack's services, under a mutex of their own (flow
// set-ups never touch them).
type services struct {
	mu     sync.Mutex
	closed bool
	addrs  map[netip.Addr]int          // services on each address; the NIC holds it while > 0
	udp    map[netip.AddrPort]struct{} // the UDP services
	open   map[io.Closer]struct{}      // what Close closes
}

// udpServices is the link's copy of the UDP services, replaced whole on
// each change and read without a lock for each packet. There are a few
// (one per address family): a scan beats a map.
type udpServices struct {
	ports []netip.AddrPort
}

// has reports whether a UDP service listens on addr:port.
func (u *udpServices) has(addr netip.Addr, port uint16) bool {
	for _, p := range u.ports {
		if p.Port() == port && p.Addr() == addr {
			return true
		}
	}
	return false
}

// hasAddr reports whether a UDP service listens on addr, at any port.
func (u *udpServices) hasAddr(addr netip.Addr) bool {
	for _, p := range u.ports {
		if p.Addr() == addr {
			return true
		}
	}
	return false
}

// udpService reports whether the UDP packet pkt (of network protocol
// proto, its next header UDP) goes to a UDP service. Fragments go by their
// address alone (only the first carries the ports): the stack reassembles
// them, and answers a datagram to another port as unreachable itself.
func (u *udpServices) udpService(pkt []byte, proto tcpip.NetworkProtocolNumber) bool {
	switch proto {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(pkt)
		dst := addr4(ip.DestinationAddressSlice())
		if ip.More() || ip.FragmentOffset() != 0 {
			return u.hasAddr(dst)
		}
		ihl := int(ip.HeaderLength())
		if ihl < header.IPv4MinimumSize || len(pkt) < ihl+header.UDPMinimumSize {
			return false
		}
		return u.has(dst, binary.BigEndian.Uint16(pkt[ihl+2:]))
	case header.IPv6ProtocolNumber:
		if len(pkt) < header.IPv6MinimumSize+header.UDPMinimumSize {
			return false
		}
		dst := addr16(header.IPv6(pkt).DestinationAddressSlice())
		return u.has(dst, binary.BigEndian.Uint16(pkt[header.IPv6MinimumSize+2:]))
	}
	return false
}

// ListenTCP serves TCP on addr, an address routed into the TUN that is not
// the device's own (shunt's DNS server): connections to it are accepted by
// the listener, not handed to the Handler. Close (of the listener, or of
// the stack) stops it.
func (n *Stack) ListenTCP(addr netip.AddrPort) (net.Listener, error) {
	a, proto, err := serviceAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen on tcp %v: %w", addr, err)
	}
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	if err := n.holdAddr(a, proto); err != nil {
		return nil, fmt.Errorf("netstack: listen on tcp %v: %w", addr, err)
	}
	l, err := gonet.ListenTCP(n.s, fullAddr(a, addr.Port()), proto)
	if err != nil {
		n.releaseAddr(a)
		return nil, fmt.Errorf("netstack: listen on tcp %v: %w", addr, err)
	}
	sl := &tcpService{TCPListener: l, n: n, addr: a}
	n.svc.open[sl] = struct{}{}
	return sl, nil
}

// ListenUDP serves UDP on addr, an address routed into the TUN that is not
// the device's own (shunt's DNS server): datagrams to it come to the
// returned connection (ReadFrom gives each one's sender, WriteTo answers
// it); UDP to any other address or port keeps its ICMP "port
// unreachable". Close (of the connection, or of the stack) stops it.
func (n *Stack) ListenUDP(addr netip.AddrPort) (net.PacketConn, error) {
	a, proto, err := serviceAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("netstack: listen on udp %v: %w", addr, err)
	}
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	if err := n.holdAddr(a, proto); err != nil {
		return nil, fmt.Errorf("netstack: listen on udp %v: %w", addr, err)
	}
	local := fullAddr(a, addr.Port())
	c, err := gonet.DialUDP(n.s, &local, nil, proto)
	if err != nil {
		n.releaseAddr(a)
		return nil, fmt.Errorf("netstack: listen on udp %v: %w", addr, err)
	}
	key := netip.AddrPortFrom(a, addr.Port())
	sc := &udpService{UDPConn: c, n: n, addr: key}
	n.svc.open[sc] = struct{}{}
	n.svc.udp[key] = struct{}{}
	n.publishUDP()
	return sc, nil
}

// serviceAddr checks a service's address, and returns it (unmapped) with
// its network protocol.
func serviceAddr(addr netip.AddrPort) (netip.Addr, tcpip.NetworkProtocolNumber, error) {
	a := addr.Addr().Unmap()
	switch {
	case !a.IsValid():
		return a, 0, errors.New("no address")
	case a.IsUnspecified() || a.IsMulticast():
		return a, 0, errors.New("a service needs one unicast address")
	case a.Zone() != "":
		return a, 0, errors.New("a service's address takes no zone")
	case addr.Port() == 0:
		return a, 0, errors.New("a service needs a port")
	}
	if a.Is4() {
		return a, ipv4.ProtocolNumber, nil
	}
	return a, ipv6.ProtocolNumber, nil
}

func fullAddr(a netip.Addr, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(a.AsSlice()), Port: port}
}

// holdAddr adds a to the NIC for one more service (the first adds it);
// svc.mu must be held.
func (n *Stack) holdAddr(a netip.Addr, proto tcpip.NetworkProtocolNumber) error {
	if n.svc.closed {
		return net.ErrClosed
	}
	if n.svc.addrs == nil {
		n.svc.addrs = map[netip.Addr]int{}
		n.svc.udp = map[netip.AddrPort]struct{}{}
		n.svc.open = map[io.Closer]struct{}{}
	}
	if n.svc.addrs[a] == 0 {
		pa := tcpip.ProtocolAddress{Protocol: proto, AddressWithPrefix: tcpip.AddrFromSlice(a.AsSlice()).WithPrefix()}
		// Never primary: the address is only ever the source of a
		// service's answers, never one gVisor picks for anything else.
		if err := n.s.AddProtocolAddress(nicID, pa, stack.AddressProperties{PEB: stack.NeverPrimaryEndpoint}); err != nil {
			return fmt.Errorf("add the address to the stack: %v", err)
		}
	}
	n.svc.addrs[a]++
	return nil
}

// releaseAddr lets go of a for one service (the last removes it from the
// NIC); svc.mu must be held.
func (n *Stack) releaseAddr(a netip.Addr) {
	if n.svc.addrs[a]--; n.svc.addrs[a] > 0 {
		return
	}
	delete(n.svc.addrs, a)
	if err := n.s.RemoveAddress(nicID, tcpip.AddrFromSlice(a.AsSlice())); err != nil {
		n.log.WithField("addr", a.String()).Warnf("netstack: remove a service's address from the stack: %v", err)
	}
}

// publishUDP gives the link the UDP services as they are now; svc.mu must
// be held.
func (n *Stack) publishUDP() {
	if len(n.svc.udp) == 0 {
		n.link.udp.Store(nil)
		return
	}
	u := &udpServices{ports: make([]netip.AddrPort, 0, len(n.svc.udp))}
	for p := range n.svc.udp {
		u.ports = append(u.ports, p)
	}
	n.link.udp.Store(u)
}

// closedService forgets a closed service and lets go of its address.
func (n *Stack) closedService(c io.Closer, addr netip.Addr) {
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	if _, ok := n.svc.open[c]; !ok {
		return
	}
	delete(n.svc.open, c)
	n.releaseAddr(addr)
}

// unpublishUDP stops the link handing datagrams to a UDP service.
func (n *Stack) unpublishUDP(p netip.AddrPort) {
	n.svc.mu.Lock()
	defer n.svc.mu.Unlock()
	delete(n.svc.udp, p)
	n.publishUDP()
}

// closeServices closes every service, and refuses new ones.
func (n *Stack) closeServices() {
	n.svc.mu.Lock()
	n.svc.closed = true
	open := make([]io.Closer, 0, len(n.svc.open))
	for c := range n.svc.open {
		open = append(open, c)
	}
	n.svc.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

// tcpService is a ListenTCP listener.
type tcpService struct {
	*gonet.TCPListener
	n    *Stack
	addr netip.Addr
	once sync.Once
}

// Close stops the listener; connections it accepted stay open.
func (l *tcpService) Close() error {
	var err error
	l.once.Do(func() {
		err = l.TCPListener.Close()
		l.n.closedService(l, l.addr)
	})
	return err
}

// udpService is a ListenUDP connection.
type udpService struct {
	*gonet.UDPConn
	n    *Stack
	addr netip.AddrPort
	once sync.Once
}

// Close stops the service: a blocked ReadFrom returns net.ErrClosed.
func (c *udpService) Close() error {
	var err error
	c.once.Do(func() {
		// Unpublished first: no datagram goes to an endpoint that is
		// going away.
		c.n.unpublishUDP(c.addr)
		err = c.UDPConn.Close()
		c.n.closedService(c, c.addr.Addr())
	})
	return err
}
