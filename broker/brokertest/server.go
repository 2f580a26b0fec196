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
	// HoldOpens leaves direct-tcpip channel opens unanswered, as a server
	// whose connect to the target hangs, until ReleaseHeld.
	HoldOpens atomic.Bool
	// IgnoreGlobalRequests stops answering global requests (keepalives):
	// the server looks dead to a client that waits for the answer.
	IgnoreGlobalRequests atomic.Bool
	// Accepted counts the direct-tcpip channels accepted; OpenChannels
	// those not yet closed by both sides.
	Accepted     atomic.Int32
	OpenChannels atomic.Int32

	opts       Options
	ln         net.Listener
	authorized map[string]bool
	mu         sync.Mutex
	conns      map[net.Conn]bool
	held       []heldOpen
	asked      []string
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

// Options configure a server beyond key authentication.
type Options struct {
	// Authorized client keys.
	Authorized []ssh.PublicKey
	// UserCA, when set, accepts user certificates it signed.
	UserCA ssh.PublicKey
	// HostKey replaces the generated host key; HostCertificate presents
	// it as a certificate.
	HostKey         ssh.Signer
	HostCertificate *ssh.Certificate
	// Password enables password authentication with this password.
	Password string
	// Challenge enables keyboard-interactive authentication: one
	// question, answered with Answer.
	Challenge, Answer string
	// Addr to listen on; empty means 127.0.0.1:0.
	Addr string
	// ServerVersion replaces x/crypto's identification string
	// ("SSH-2.0-Go"), e.g. to pass for OpenSSH.
	ServerVersion string
	// Dial, when set, connects direct-tcpip channels to their targets
	// ("host:port" as the client asked); nil means net.Dial. A test
	// sends flows for addresses no machine has to a listener of its own.
	Dial func(network, addr string) (net.Conn, error)
	// Forwarded, when set, runs for every accepted direct-tcpip channel,
	// in a goroutine of its own, while the channel relays to its target:
	// a test misbehaves on the channel there (requests, stderr data).
	// The channel closes when Forwarded has returned and the relay ended.
	Forwarded func(ch ssh.Channel)
	// Connected, when set, runs for every logged-in connection, in a
	// goroutine of its own: a test misbehaves on the connection there
	// (opens channels to the client, sends global requests). It must
	// return once the connection has ended (sc.Wait); Close waits for it.
	Connected func(sc *ssh.ServerConn)
}

// New starts a server that accepts the given client keys. It stops when the
// test ends.
func New(t testing.TB, authorized ...ssh.PublicKey) *Server {
	t.Helper()
	return NewWithOptions(t, Options{Authorized: authorized})
}

// NewWithOptions starts a server configured by opts.
func NewWithOptions(t testing.TB, opts Options) *Server {
	t.Helper()
	authorized := opts.Authorized
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	hostKey := opts.HostKey
	if hostKey == nil {
		hostKey = NewKey(t)
	}
	s := &Server{
		Addr:       ln.Addr().String(),
		HostKey:    hostKey,
		opts:       opts,
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

// Allow authorizes another client key.
func (s *Server) Allow(k ssh.PublicKey) {
	s.mu.Lock()
	s.authorized[string(k.Marshal())] = true
	s.mu.Unlock()
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

// heldOpen is a channel open left unanswered (HoldOpens).
type heldOpen struct {
	conn   *ssh.ServerConn
	answer func()
}

// ReleaseHeld answers the channel opens held so far (see HoldOpens) as
// the server would have without holding them.
func (s *Server) ReleaseHeld() {
	s.mu.Lock()
	held := s.held
	s.held = nil
	s.mu.Unlock()
	for _, h := range held {
		h.answer()
	}
}

// Held is the number of channel opens held and not yet answered.
func (s *Server) Held() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// Asked lists what clients asked of the server, in order: "global TYPE"
// for each global request, "channel TYPE" for each channel open, "TYPE"
// for each request on a channel (only direct-tcpip channels take them).
func (s *Server) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

func (s *Server) record(what string) {
	s.mu.Lock()
	s.asked = append(s.asked, what)
	s.mu.Unlock()
}

// Close stops the server and waits for its goroutines.
func (s *Server) Close() {
	s.ln.Close()
	s.Drop()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	checker := &ssh.CertChecker{
		IsUserAuthority: func(auth ssh.PublicKey) bool {
			return s.opts.UserCA != nil && string(auth.Marshal()) == string(s.opts.UserCA.Marshal())
		},
		UserKeyFallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			ok := s.authorized[string(key.Marshal())]
			s.mu.Unlock()
			if ok {
				return nil, nil
			}
			return nil, fmt.Errorf("key not authorized")
		},
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: checker.Authenticate, ServerVersion: s.opts.ServerVersion}
	if s.opts.Password != "" {
		cfg.PasswordCallback = func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if string(pw) == s.opts.Password {
				return nil, nil
			}
			return nil, fmt.Errorf("wrong password")
		}
	}
	if s.opts.Challenge != "" {
		cfg.KeyboardInteractiveCallback = func(_ ssh.ConnMetadata, client ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			ans, err := client("", "", []string{s.opts.Challenge}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(ans) == 1 && ans[0] == s.opts.Answer {
				return nil, nil
			}
			return nil, fmt.Errorf("wrong answer")
		}
	}
	if s.opts.HostCertificate != nil {
		cs, err := ssh.NewCertSigner(s.opts.HostCertificate, s.HostKey)
		if err != nil {
			panic(err)
		}
		cfg.AddHostKey(cs)
	} else {
		cfg.AddHostKey(s.HostKey)
	}
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
	if s.opts.Connected != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.opts.Connected(sc)
		}()
	}
	go func() {
		for r := range reqs { // keepalives and anything else: "unknown"
			s.record("global " + r.Type)
			if r.WantReply && !s.IgnoreGlobalRequests.Load() {
				r.Reply(false, nil)
			}
		}
	}()
	gone := connGone(sc)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		s.record("channel " + nc.ChannelType())
		if nc.ChannelType() != "direct-tcpip" {
			nc.Reject(ssh.UnknownChannelType, "only direct-tcpip")
			continue
		}
		if s.HoldOpens.Load() {
			wg.Add(1)
			s.mu.Lock()
			s.held = append(s.held, heldOpen{conn: sc, answer: func() {
				go func() {
					defer wg.Done()
					s.forward(nc, gone)
				}()
			}})
			s.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.forward(nc, gone)
		}()
	}
	// The connection is gone: its opens still held are never answered.
	s.mu.Lock()
	kept := s.held[:0]
	for _, h := range s.held {
		if h.conn == sc {
			wg.Done()
			continue
		}
		kept = append(kept, h)
	}
	s.held = kept
	s.mu.Unlock()
}

// forward answers a direct-tcpip open and relays the channel to its
// target until both directions end, or the connection does.
func (s *Server) forward(nc ssh.NewChannel, gone <-chan struct{}) {
	var msg struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &msg); err != nil {
		nc.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	if s.ForbidForwarding.Load() {
		nc.Reject(ssh.Prohibited, "administratively prohibited: open failed")
		return
	}
	target := net.JoinHostPort(msg.Host, strconv.Itoa(int(msg.Port)))
	dial := s.opts.Dial
	if dial == nil {
		dial = net.Dial
	}
	up, err := dial("tcp", target)
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "connect failed: "+err.Error())
		return
	}
	ch, creqs, err := nc.Accept()
	if err != nil {
		up.Close()
		return
	}
	s.Accepted.Add(1)
	s.OpenChannels.Add(1)
	defer s.OpenChannels.Add(-1)
	reqsDone := make(chan struct{})
	go func() {
		for r := range creqs {
			s.record(r.Type)
			if r.WantReply {
				r.Reply(false, nil)
			}
		}
		close(reqsDone)
	}()
	misbehaved := make(chan struct{})
	go func() {
		defer close(misbehaved)
		if s.opts.Forwarded != nil {
			s.opts.Forwarded(ch)
		}
	}()
	done := make(chan struct{})
	go func() {
		io.Copy(ch, up)
		ch.CloseWrite()
		close(done)
	}()
	io.Copy(up, ch)
	if cw, ok := up.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	select {
	case <-done:
	case <-gone:
	}
	up.Close()
	<-misbehaved
	ch.Close()
	// Wait for the client's close too (x/crypto closes the request
	// channel then), so OpenChannels counts what both sides hold.
	select {
	case <-reqsDone:
	case <-gone:
	}
}

func connGone(sc *ssh.ServerConn) <-chan struct{} {
	c := make(chan struct{})
	go func() { sc.Wait(); close(c) }()
	return c
}
