package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// Dialer opens the connections clients ask for. *net.Dialer fits.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Resolver finds the addresses of a host name a client asks for.
// *net.Resolver fits.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options are what a Server needs. HostKey and AuthorizedKeys (or
// AuthorizedKeysFile) are required; an empty Permit lets clients open
// nothing.
type Options struct {
	HostKey        ssh.Signer
	AuthorizedKeys *AuthorizedKeys
	// AuthorizedKeysFile, when set, is read again at each login, as sshd
	// does, so that adding or removing a key needs no restart. A file
	// with an error refuses every login until it is fixed: a revoked key
	// must not stay valid because of a typo on another line.
	AuthorizedKeysFile string
	Permit             Permit
	MaxStartups        MaxStartups
	MaxAuthTries       int
	LoginGraceTime     time.Duration
	// DialTimeout bounds each dial of a destination (default 10s).
	DialTimeout time.Duration
	Log         logrus.FieldLogger
	Dialer      Dialer   // nil: a net.Dialer
	Resolver    Resolver // nil: net.DefaultResolver
	Rand        Rand     // nil: math/rand/v2
}

// Server is an SSH server that authenticates keys from an authorized_keys
// file and opens only direct-tcpip channels, to destinations both the
// key's permitopen= and the gateway's permit list allow.
type Server struct {
	cfg      ssh.ServerConfig
	opts     Options
	startups *Startups
	log      logrus.FieldLogger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// entriesKey holds, in ssh.Permissions.ExtraData, the authorized_keys
// entries that let the connection in.
type entriesKey struct{}

// New makes a server; Serve starts it.
func New(o Options) (*Server, error) {
	if o.HostKey == nil {
		return nil, errors.New("gateway: no host key")
	}
	if o.AuthorizedKeys == nil && o.AuthorizedKeysFile == "" {
		return nil, errors.New("gateway: no authorized keys")
	}
	d := DefaultConfig()
	if o.MaxStartups == (MaxStartups{}) {
		o.MaxStartups = d.MaxStartups
	}
	if o.MaxAuthTries == 0 {
		o.MaxAuthTries = d.MaxAuthTries
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		o.Log = l
	}
	s := &Server{
		opts:      o,
		startups:  NewStartups(o.MaxStartups, o.Rand),
		log:       o.Log,
		listeners: map[net.Listener]struct{}{},
		conns:     map[net.Conn]struct{}{},
	}
	s.cfg = ssh.ServerConfig{
		MaxAuthTries:      o.MaxAuthTries,
		ServerVersion:     "SSH-2.0-shunt-gateway",
		PublicKeyCallback: s.checkKey,
	}
	s.cfg.AddHostKey(o.HostKey)
	return s, nil
}

func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	var from netip.Addr
	if ap, err := netip.ParseAddrPort(meta.RemoteAddr().String()); err == nil {
		from = ap.Addr()
	}
	keys := s.opts.AuthorizedKeys
	if s.opts.AuthorizedKeysFile != "" {
		var err error
		if keys, err = LoadAuthorizedKeys(s.opts.AuthorizedKeysFile); err != nil {
			s.log.WithError(err).Error("refusing logins until the authorized keys file is fixed")
			return nil, errors.New("authorized keys file unusable")
		}
	}
	var ok []*AuthorizedKey
	for _, e := range keys.Lookup(key) {
		if e.AllowsFrom(from) {
			ok = append(ok, e)
		}
	}
	if ok == nil {
		return nil, fmt.Errorf("key %s is not authorized from %s", ssh.FingerprintSHA256(key), from)
	}
	return &ssh.Permissions{ExtraData: map[any]any{entriesKey{}: ok}}, nil
}

// Serve accepts connections on l until Close; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.log.WithFields(logrus.Fields{
		"addr":     l.Addr().String(),
		"host_key": ssh.FingerprintSHA256(s.opts.HostKey.PublicKey()),
	}).Info("gateway listening")
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, l)
			s.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		if !s.track(nc) {
			nc.Close()
			continue
		}
		s.wg.Go(func() {
			defer s.untrack(nc)
			s.handle(nc)
		})
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close stops every listener and connection, and waits for their
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) handle(nc net.Conn) {
	log := s.log.WithField("client", nc.RemoteAddr().String())
	done, ok := s.startups.Admit()
	if !ok {
		log.Warn("dropping connection: too many unauthenticated connections (max_startups)")
		return
	}
	if s.opts.LoginGraceTime > 0 {
		nc.SetDeadline(time.Now().Add(s.opts.LoginGraceTime))
	}
	sc, chans, reqs, err := ssh.NewServerConn(nc, &s.cfg)
	done()
	if err != nil {
		log.WithError(err).Info("login failed")
		return
	}
	defer sc.Close()
	nc.SetDeadline(time.Time{})
	entries, _ := sc.Permissions.ExtraData[entriesKey{}].([]*AuthorizedKey)
	log = log.WithField("user", sc.User())
	if len(entries) > 0 {
		log = log.WithFields(logrus.Fields{
			"key":         fmt.Sprintf("%s:%d", entries[0].File, entries[0].Line),
			"fingerprint": ssh.FingerprintSHA256(entries[0].Key),
		})
	}
	log.Info("logged in")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Global requests (tcpip-forward and the like) are all refused.
	wg.Go(func() { ssh.DiscardRequests(reqs) })
	for nch := range chans {
		if nch.ChannelType() != "direct-tcpip" {
			nch.Reject(ssh.Prohibited, "this gateway opens only direct-tcpip channels (ssh -W, -L, -J, or shunt)")
			continue
		}
		wg.Go(func() { s.direct(ctx, log, nch, entries) })
	}
	cancel()
}

// directTCPIP is the payload of a direct-tcpip open (RFC 4254 7.2).
type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

func (s *Server) direct(ctx context.Context, log logrus.FieldLogger, nch ssh.NewChannel, entries []*AuthorizedKey) {
	var req directTCPIP
	if err := ssh.Unmarshal(nch.ExtraData(), &req); err != nil {
		nch.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	log = log.WithField("dst", net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))))
	if req.Port == 0 || req.Port > 65535 {
		nch.Reject(ssh.ConnectionFailed, "port out of range")
		return
	}
	port := uint16(req.Port)
	allowed := false
	for _, e := range entries {
		if e.AllowsOpen(req.Host, port) {
			allowed = true
			break
		}
	}
	if !allowed {
		log.Info("refused: the key's permitopen= does not allow it")
		nch.Reject(ssh.Prohibited, "the key's permitopen= (authorized_keys) does not allow this destination")
		return
	}
	c, reason := s.dial(ctx, req.Host, port)
	if c == nil {
		log.WithField("reason", reason).Info("refused")
		code := ssh.ConnectionFailed
		if reason.prohibited {
			code = ssh.Prohibited
		}
		nch.Reject(code, reason.msg)
		return
	}
	ch, chreqs, err := nch.Accept()
	if err != nil {
		c.Close()
		return
	}
	log.Debug("opened")
	var wg sync.WaitGroup
	wg.Go(func() { ssh.DiscardRequests(chreqs) })
	splice(ctx, ch, c)
	wg.Wait()
}

type refusal struct {
	prohibited bool
	msg        string
}

func (r refusal) String() string { return r.msg }

// dial resolves host, keeps the addresses the permit list allows, and
// dials them in turn.
func (s *Server) dial(ctx context.Context, host string, port uint16) (net.Conn, refusal) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a.Unmap()}
	} else {
		rctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		as, err := s.opts.Resolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if err != nil || len(as) == 0 {
			return nil, refusal{msg: fmt.Sprintf("cannot resolve %s", host)}
		}
		addrs = as
	}
	var permitted []netip.Addr
	why := ""
	for _, a := range addrs {
		ok, reason := s.opts.Permit.Check(a, port)
		if ok {
			permitted = append(permitted, a.Unmap())
		} else if why == "" {
			why = reason
		}
	}
	if permitted == nil {
		return nil, refusal{prohibited: true, msg: "not permitted by the gateway: " + why}
	}
	var last error
	for _, a := range permitted {
		dctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
		c, err := s.opts.Dialer.DialContext(dctx, "tcp", netip.AddrPortFrom(a, port).String())
		cancel()
		if err == nil {
			return c, refusal{}
		}
		last = err
	}
	return nil, refusal{msg: fmt.Sprintf("connect failed: %v", last)}
}

// splice copies both ways, passing each side's end of data (FIN) on as a
// half-close; an error either way, or the end of ctx (the SSH connection
// is gone), closes both.
func splice(ctx context.Context, ch ssh.Channel, c net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			ch.Close()
			c.Close()
		})
	}
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := io.Copy(c, ch); err != nil {
			abort()
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			abort()
		}
	})
	if _, err := io.Copy(ch, c); err != nil {
		abort()
	} else {
		ch.CloseWrite()
	}
	wg.Wait()
	abort()
}
