package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/ssh"

	"github.com/shunt-dev/shunt/internal/errs"
)

// establish connects to the profile's first host that answers.
// a is the attempt it makes.
func (l *link) establish(a *attempt) (*session, error) {
	p := l.pool.p
	if len(p.Hosts) == 0 {
		return nil, fmt.Errorf("profile %s has no host", p.Name)
	}
	var failures []error
	for i, host := range p.Hosts {
		s, err := l.connectHost(a, host)
		if err == nil {
			if i > 0 {
				l.log.WithFields(logrus.Fields{"server": s.server, "failed": len(failures)}).Warn("failed over to the next host")
			}
			return s, nil
		}
		failures = append(failures, err)
		// A refused host key is no reason to trust the next host less,
		// nor the next host a reason to hide it: keep going, report all.
	}
	// One line, stamped: the flows this attempt refuses refer to it.
	return nil, &attemptError{err: errs.Join(failures...), at: time.Now()}
}

// route says how a server of p is reached (see hopTo): the proxy to dial
// through, if any, and the way in words, for errors: "direct", "via
// socks5://proxy:1080 (proxy rule 2)", "via jump profile bastion".
func (b *Broker) route(p *Profile, host string) (proxy *url.URL, how string) {
	h := hopTo(p, b.currentProxyRules(), host)
	return h.proxy, h.String()
}

// SetProxyRules replaces the proxy rules: connections made from then on
// follow them; connections already up are kept.
func (b *Broker) SetProxyRules(rules []ProxyRule) { b.proxyRules.Store(&rules) }

// currentProxyRules are the proxy rules in force.
func (b *Broker) currentProxyRules() []ProxyRule {
	if r := b.proxyRules.Load(); r != nil {
		return *r
	}
	return b.opts.ProxyRules
}

// reach opens the transport to addr: through the jump profile, a proxy, or
// directly.
func (b *Broker) reach(ctx context.Context, p *Profile, host, addr string) (net.Conn, error) {
	if p.Jump != "" {
		return b.Dial(ctx, p.Jump, addr)
	}
	proxy, _ := b.route(p, host)
	if proxy != nil {
		return dialProxy(ctx, b.opts.Dialer, proxy, addr)
	}
	return b.opts.Dialer.DialContext(ctx, "tcp", addr)
}

func (l *link) connectHost(a *attempt, host string) (*session, error) {
	pl := l.pool
	p := pl.p
	b := pl.b
	addr := net.JoinHostPort(host, strconv.Itoa(p.Port))
	_, how := b.route(p, host)
	l.setTarget(addr, how)
	fail := func(stage string, err error) error {
		return fmt.Errorf("profile %s: %s %s %s: %w", p.Name, stage, addr, how, err)
	}
	hk, err := loadHostKeys(p.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	start := time.Now()
	raw, err := b.reach(ctx, p, host, addr)
	if err != nil {
		return nil, fail("connect to SSH server", err)
	}
	conn := newWatchedConn(newCoalescingConn(raw))
	// The handshake has no context: bound it by a timer, paused while a
	// prompt waits for the user.
	hs := &handshake{link: l, attempt: a, conn: conn, server: addr, route: how, deadline: connectTimeout}
	hs.resume()
	auth, release := hs.authMethods()
	defer release()
	cfg := &ssh.ClientConfig{
		User:              p.User,
		Auth:              auth,
		AuthCallback:      hs.nextMethod,
		HostKeyCallback:   hs.hostKeyCallback(hk),
		HostKeyAlgorithms: hk.algorithms(addr),
		Config:            ssh.Config{Ciphers: p.Ciphers},
		BannerCallback: func(msg string) error {
			for _, line := range bannerLines(msg) {
				l.log.WithField("server", addr).Infof("server banner: %s", line)
			}
			return nil
		},
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !hs.finish() {
		// The timer closed the transport, perhaps just as the login
		// succeeded: the session is dead either way.
		if err == nil {
			sc.Close()
			err = errors.New("the connection was closed at the login deadline")
		}
		err = fmt.Errorf("no answer within %v: %w", connectTimeout, err)
	}
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		if errors.As(err, &hke) {
			return nil, fmt.Errorf("profile %s: %w", p.Name, hke)
		}
		var le *LoginError
		if errors.As(hs.refusal(err), &le) {
			return nil, fmt.Errorf("profile %s: %w", p.Name, le)
		}
		return nil, fail("SSH login as "+p.User+" to", err)
	}
	hs.remember()
	l.setHostKey(hs.hostKey)
	took := time.Since(start)
	l.handshakeTook(took)
	l.log.WithFields(logrus.Fields{
		"server":    addr,
		"route":     how,
		"user":      p.User,
		"handshake": took.Round(time.Millisecond).String(),
		"version":   string(sc.ServerVersion()),
		"host_key":  hs.hostKey,
	}).Info("SSH connection up")
	// x/crypto's Client answers the server's global requests with
	// failure (keepalives among them, as OpenSSH's ssh does) and never
	// more; the channels the server opens are refused here instead, to
	// be logged and counted.
	s := newSession(l, ssh.NewClient(sc, noChannels(), reqs), conn, addr)
	go s.refuseChannelOpens(l, chans)
	return s, nil
}

// bannerLines splits a server's banner into the lines worth logging, one
// log line each: without control characters (a banner is the server's
// text, and may hold escape sequences) and without blank lines.
func bannerLines(msg string) []string {
	var out []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, line))
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}
