// Package brokertest provides an in-process SSH server for tests: public-key
// authentication and direct-tcpip forwarding, as OpenSSH's sshd offers them.
package brokertest

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Server is a running SSH server on 127.0.0.1.
type Server struct {
	// Addr is host:port of the server.
	Addr string
	// HostKey is the server's host key.
	HostKey ssh.Signer
	// Logins counts successful authentications.
	Logins atomic.Int32
	// ForbidForwarding refuses every direct-tcpip channel as
	// "administratively prohibited", like sshd's AllowTcpForwarding no.
	ForbidForwarding atomic.Bool

	ln         net.Listener
	authorized map[string]bool
	mu         sync.Mutex
	conns      map[net.Conn]bool
	wg         sync.WaitGroup
}

// NewKey returns a new ed25519 signer.
func NewKey(t testing.TB) ssh.Signer {
	t.Helper()
	s, err := ssh.NewSignerFromKey(NewPrivateKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// NewPrivateKey returns a new ed25519 private key.
func NewPrivateKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// New starts a server that accepts the given client keys. It stops when the
// test ends.
func New(t testing.TB, authorized ...ssh.PublicKey) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr:       ln.Addr().String(),
		HostKey:    NewKey(t),
		ln:         ln,
		authorized: map[string]bool{},
		conns:      map[net.Conn]bool{},
	}
	for _, k := range authorized {
		s.authorized[string(k.Marshal())] = true
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// Port is the server's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// KnownHostsLine is the known_hosts line for this server.
func (s *Server) KnownHostsLine() string {
	return fmt.Sprintf("[127.0.0.1]:%d %s", s.Port(), ssh.MarshalAuthorizedKey(s.HostKey.PublicKey()))
}

// Drop closes every open connection, as if the server had crashed.
func (s *Server) Drop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() {
	s.ln.Close()
	s.Drop()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if s.authorized[string(key.Marshal())] {
				return nil, nil
			}
			return nil, fmt.Errorf("key not authorized")
		},
	}
	cfg.AddHostKey(s.HostKey)
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c, cfg)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

func (s *Server) handle(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.Logins.Add(1)
	go func() {
		for r := range reqs { // keepalives and anything else: "unknown"
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			nc.Reject(ssh.UnknownChannelType, "only direct-tcpip")
			continue
		}
		var msg struct {
			Host     string
			Port     uint32
			OrigHost string
			OrigPort uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
			nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
			continue
		}
		if s.ForbidForwarding.Load() {
			nc.Reject(ssh.Prohibited, "administratively prohibited: open failed")
			continue
		}
		target := net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port)))
		up, err := net.Dial("tcp", target)
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, "connect failed: "+err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			up.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() {
				io.Copy(ch, up)
				ch.CloseWrite()
				close(done)
			}()
			io.Copy(up, ch)
			up.(*net.TCPConn).CloseWrite()
			select {
			case <-done:
			case <-connGone(sc):
			}
			up.Close()
			ch.Close()
		}()
	}
}

func connGone(sc *ssh.ServerConn) <-chan struct{} {
	c := make(chan struct{})
	go func() { sc.Wait(); close(c) }()
	return c
}
