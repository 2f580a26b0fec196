// Package broker keeps the SSH connections that carry tunnelled flows: one
// per connection profile, opened on the profile's first flow and shared by
// all its flows as direct-tcpip channels.
package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"
)

// Profile is how to reach and log in to one SSH server.
type Profile struct {
	Name          string
	Host          string
	Port          int
	User          string
	IdentityFiles []string
	KnownHosts    []string
	// Ciphers in order of preference; empty means DefaultCiphers.
	Ciphers []string
	// KeepaliveInterval and KeepaliveCount: a connection whose server has
	// not answered for interval × count is closed. Zero means the defaults.
	KeepaliveInterval time.Duration
	KeepaliveCount    int
}

// DefaultCiphers prefers AES-GCM: it has assembly in Go on amd64 and
// arm64, and is several times faster than Go's chacha20-poly1305.
var DefaultCiphers = []string{
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
	"chacha20-poly1305@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

const (
	defaultKeepaliveInterval = 15 * time.Second
	defaultKeepaliveCount    = 3
	// connectTimeout bounds one connection attempt: TCP, key exchange and
	// authentication.
	connectTimeout = 30 * time.Second
)

// Dialer opens the TCP connection to an SSH server. It must not be
// captured by shunt itself.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Options configure a Broker.
type Options struct {
	// Dialer reaches SSH servers; nil means a plain net.Dialer.
	Dialer Dialer
	// AgentSocket is the ssh-agent's socket (SSH_AUTH_SOCK); empty means
	// no agent.
	AgentSocket string
	Log         logrus.FieldLogger
}

// Broker dials tunnelled connections through its profiles. It implements
// router.Tunnels.
type Broker struct {
	links map[string]*link
	opts  Options
}

// New returns a broker for profiles. Nothing connects until the first Dial.
func New(profiles []Profile, opts Options) (*Broker, error) {
	if opts.Dialer == nil {
		opts.Dialer = &net.Dialer{}
	}
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	b := &Broker{links: map[string]*link{}, opts: opts}
	for i := range profiles {
		p := profiles[i]
		if p.Port == 0 {
			p.Port = 22
		}
		if len(p.Ciphers) == 0 {
			p.Ciphers = DefaultCiphers
		}
		if p.KeepaliveInterval <= 0 {
			p.KeepaliveInterval = defaultKeepaliveInterval
		}
		if p.KeepaliveCount <= 0 {
			p.KeepaliveCount = defaultKeepaliveCount
		}
		if _, dup := b.links[p.Name]; dup {
			return nil, fmt.Errorf("profile %q defined twice", p.Name)
		}
		b.links[p.Name] = &link{
			p:    &p,
			opts: &b.opts,
			log:  opts.Log.WithField("profile", p.Name),
		}
	}
	return b, nil
}

// Dial opens a direct-tcpip channel to addr ("host:port", resolved by the
// server) through the named profile, connecting first if needed. A refusal
// by the server is returned as a *ChannelError.
func (b *Broker) Dial(ctx context.Context, profile, addr string) (net.Conn, error) {
	l, ok := b.links[profile]
	if !ok {
		return nil, fmt.Errorf("no connection profile %q", profile)
	}
	return l.dial(ctx, addr)
}

// Close closes every connection; later Dials fail.
func (b *Broker) Close() error {
	var errs []error
	for _, l := range b.links {
		errs = append(errs, l.close())
	}
	return errors.Join(errs...)
}

// ChannelError is a server's refusal to open a channel.
type ChannelError struct {
	Profile string
	Target  string
	Err     *ssh.OpenChannelError
}

func (e *ChannelError) Error() string {
	switch e.Err.Reason {
	case ssh.Prohibited:
		return fmt.Sprintf("profile %s: server forbids TCP forwarding (to %s): %s", e.Profile, e.Target, e.Err.Message)
	case ssh.ConnectionFailed:
		return fmt.Sprintf("profile %s: server could not connect to %s: %s", e.Profile, e.Target, e.Err.Message)
	}
	return fmt.Sprintf("profile %s: server refused channel to %s: %v", e.Profile, e.Target, e.Err)
}

func (e *ChannelError) Unwrap() error { return e.Err }

// link is a profile's SSH connection. Concurrent first flows share one
// connection attempt.
type link struct {
	p    *Profile
	opts *Options
	log  logrus.FieldLogger

	mu         sync.Mutex
	client     *ssh.Client
	connecting chan struct{} // closed when the running attempt ends
	lastErr    error         // result of the last attempt
	closed     bool
}

// get returns the connection, connecting if there is none. Callers that
// arrive while an attempt runs wait for that attempt and share its result.
func (l *link) get(ctx context.Context) (*ssh.Client, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("broker closed")
	}
	if c := l.client; c != nil {
		l.mu.Unlock()
		return c, nil
	}
	if l.connecting == nil {
		l.connecting = make(chan struct{})
		go l.connect(l.connecting)
	}
	wait := l.connecting
	l.mu.Unlock()

	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	return nil, l.lastErr
}

// connect makes one connection attempt and publishes its result.
func (l *link) connect(done chan struct{}) {
	c, err := l.handshake()
	l.mu.Lock()
	l.connecting = nil
	l.lastErr = err
	if err == nil && l.closed {
		c.Close()
		c, err = nil, errors.New("broker closed")
		l.lastErr = err
	}
	if err == nil {
		l.client = c
	}
	l.mu.Unlock()
	close(done)
	if err != nil {
		l.log.WithError(err).Error("SSH connection failed")
		return
	}
	stop := make(chan struct{})
	go l.keepalive(c, stop)
	go func() {
		err := c.Wait()
		close(stop)
		l.mu.Lock()
		if l.client == c {
			l.client = nil
		}
		closed := l.closed
		l.mu.Unlock()
		if !closed {
			l.log.WithError(err).Warn("SSH connection lost; the next flow reconnects")
		}
	}()
}

func (l *link) handshake() (*ssh.Client, error) {
	p := l.p
	addr := net.JoinHostPort(p.Host, strconv.Itoa(p.Port))
	log := l.log.WithField("server", addr)
	hk, err := loadHostKeys(p.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	keys, release, err := signers(p, l.opts.AgentSocket, log)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	defer release()

	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	start := time.Now()
	conn, err := l.opts.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("profile %s: connect to SSH server %s: %w", p.Name, addr, err)
	}
	cfg := &ssh.ClientConfig{
		User:              p.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(keys...)},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(addr),
		Config:            ssh.Config{Ciphers: p.Ciphers},
		Timeout:           connectTimeout,
	}
	// The handshake has no context of its own: bound it by the deadline.
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		if errors.As(err, &hke) {
			return nil, fmt.Errorf("profile %s: %w", p.Name, hke)
		}
		return nil, fmt.Errorf("profile %s: SSH login to %s as %s: %w", p.Name, addr, p.User, err)
	}
	conn.SetDeadline(time.Time{})
	log.WithFields(logrus.Fields{
		"user":      p.User,
		"handshake": time.Since(start).Round(time.Millisecond).String(),
		"version":   string(sc.ServerVersion()),
	}).Info("SSH connection up")
	return ssh.NewClient(sc, chans, reqs), nil
}

// keepalive closes c when the server has not answered for interval × count.
func (l *link) keepalive(c *ssh.Client, stop <-chan struct{}) {
	t := time.NewTicker(l.p.KeepaliveInterval)
	defer t.Stop()
	replies := make(chan error, 1)
	pending, missed := false, 0
	for {
		select {
		case <-stop:
			return
		case err := <-replies:
			pending = false
			if err == nil {
				missed = 0
			}
		case <-t.C:
			if pending {
				missed++
				if missed >= l.p.KeepaliveCount {
					l.log.WithField("silent_for", (time.Duration(missed) * l.p.KeepaliveInterval).String()).
						Warn("SSH server stopped answering keepalives; closing the connection")
					c.Close()
					return
				}
				continue
			}
			pending = true
			go func() {
				// Any answer, even "unknown request", proves the
				// connection alive.
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
		}
	}
}

func (l *link) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.DialContext(ctx, "tcp", addr)
	if err != nil {
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) {
			return nil, &ChannelError{Profile: l.p.Name, Target: addr, Err: oce}
		}
		return nil, fmt.Errorf("profile %s: open channel to %s: %w", l.p.Name, addr, err)
	}
	return conn, nil
}

func (l *link) close() error {
	l.mu.Lock()
	l.closed = true
	c := l.client
	l.client = nil
	l.mu.Unlock()
	if c != nil {
		return c.Close()
	}
	return nil
}
