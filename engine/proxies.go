package engine

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/httpproxy"
	"github.com/shunt-dev/shunt/router"
	"github.com/shunt-dev/shunt/socks"
)

// inbound is the router's view of a proxy client's request: by name when
// the client gave one (never looked up here), else by address.
func inbound(l Listener, client, local, dst netip.AddrPort, host string, port uint16) router.Inbound {
	in := router.Inbound{Src: client, Local: local, Dst: dst, Via: l.Name()}
	if host != "" {
		in.Dst, in.Host = netip.AddrPortFrom(netip.Addr{}, port), host
	}
	return in
}

// refusalKind is the kind of a router refusal (failed when err is none).
func refusalKind(err error) router.RefusalKind {
	var r *router.Refused
	if errors.As(err, &r) {
		return r.Kind
	}
	return router.RefusedFailed
}

// The router's refusal kinds and the two proxies' Refusal values are
// declared in the same order (failed, blocked, refused, unreachable,
// timeout; TestRefusalKindsAgree checks it), so a kind converts to either.

// socksRefusal is a router refusal as the SOCKS server answers it.
type socksRefusal struct{ error }

func (e socksRefusal) Unwrap() error { return e.error }

func (e socksRefusal) Refusal() socks.Refusal { return socks.Refusal(refusalKind(e.error)) }

// httpRefusal is a router refusal as the HTTP proxy answers it.
type httpRefusal struct{ error }

func (e httpRefusal) Unwrap() error { return e.error }

func (e httpRefusal) Refusal() httpproxy.Refusal { return httpproxy.Refusal(refusalKind(e.error)) }

// httpServer is the HTTP proxy of listener l: its requests go through the
// router as flows.
func (e *Engine) httpServer(l Listener) *httpproxy.Server {
	return &httpproxy.Server{
		Log: e.log.WithField("listen", l.Name()),
		Connect: func(ctx context.Context, req httpproxy.Request, accept func() (net.Conn, error)) error {
			if err := e.router.HandleInbound(ctx, inbound(l, req.Client, req.Local, req.Dst, req.Host, req.Port), accept); err != nil {
				return httpRefusal{err}
			}
			return nil
		},
	}
}

// socksServer is the SOCKS server of listener l: its requests go through
// the router as flows, its users are the configuration's socks_users.
func (e *Engine) socksServer(l Listener, users []config.SOCKSUser) (*socks.Server, error) {
	srv := &socks.Server{
		Log: e.log.WithField("listen", l.Name()),
		Connect: func(ctx context.Context, req socks.Request, accept func() (net.Conn, error)) error {
			if err := e.router.HandleInbound(ctx, inbound(l, req.Client, req.Local, req.Dst, req.Host, req.Port), accept); err != nil {
				return socksRefusal{err}
			}
			return nil
		},
	}
	if len(users) > 0 {
		a, err := newSOCKSAuth(users, e.log)
		if err != nil {
			return nil, err
		}
		srv.Auth = a.check
	}
	return srv, nil
}

// socksAuth checks SOCKS users' passwords. A bcrypt check takes tens of
// milliseconds, on the path of every new flow: a name and password that
// passed once are remembered (as a SHA-256 digest, never the password).
type socksAuth struct {
	users map[string]socksUser
	mu    sync.Mutex
	ok    map[[32]byte]bool
}

type socksUser struct {
	hash     []byte // bcrypt, or
	password []byte // from password_file
}

func newSOCKSAuth(users []config.SOCKSUser, log interface{ Warnf(string, ...any) }) (*socksAuth, error) {
	a := &socksAuth{users: map[string]socksUser{}, ok: map[[32]byte]bool{}}
	for _, u := range users {
		if u.PasswordHash != "" {
			a.users[u.Name] = socksUser{hash: []byte(u.PasswordHash)}
			continue
		}
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: socks_users %q: password_file: %w", u.File, u.Line, u.Name, err)
		}
		if fi, err := os.Stat(u.PasswordFile); err == nil && fi.Mode().Perm()&0o004 != 0 {
			log.Warnf("socks_users %q: password_file %s can be read by every user: chmod o-r %s", u.Name, u.PasswordFile, u.PasswordFile)
		}
		pw := strings.TrimRight(string(b), "\r\n")
		if pw == "" {
			return nil, fmt.Errorf("%s:%d: socks_users %q: password_file %s is empty", u.File, u.Line, u.Name, u.PasswordFile)
		}
		a.users[u.Name] = socksUser{password: []byte(pw)}
	}
	return a, nil
}

func (a *socksAuth) check(user, password string) bool {
	u, found := a.users[user]
	if !found {
		return false
	}
	if u.password != nil {
		return subtle.ConstantTimeCompare(u.password, []byte(password)) == 1
	}
	key := sha256.Sum256([]byte(user + "\x00" + password))
	a.mu.Lock()
	ok := a.ok[key]
	a.mu.Unlock()
	if ok {
		return true
	}
	if bcrypt.CompareHashAndPassword(u.hash, []byte(password)) != nil {
		return false
	}
	a.mu.Lock()
	a.ok[key] = true
	a.mu.Unlock()
	return true
}
