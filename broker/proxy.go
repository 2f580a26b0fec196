package broker

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/proxy"

	"github.com/shunt-dev/shunt/internal/proxyurl"
)

// ParseProxy parses a proxy URL: socks4://host:port, socks4a://host:port,
// socks5://[user:pass@]host:port or http://[user:pass@]host:port. Its
// errors never show a password.
func ParseProxy(s string) (*url.URL, error) { return proxyurl.Parse(s) }

// dialProxy connects to target through the proxy p, reaching the proxy
// with d. Names are resolved by the proxy, except with socks4, which
// carries only addresses.
func dialProxy(ctx context.Context, d Dialer, p *url.URL, target string) (net.Conn, error) {
	switch p.Scheme {
	case "socks5":
		var auth *proxy.Auth
		if p.User != nil {
			pw, _ := p.User.Password()
			auth = &proxy.Auth{User: p.User.Username(), Password: pw}
		}
		s, err := proxy.SOCKS5("tcp", p.Host, auth, contextDialer{d})
		if err != nil {
			return nil, err
		}
		c, err := s.(proxy.ContextDialer).DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, fmt.Errorf("SOCKS5 proxy %s: %w", p.Host, err)
		}
		return c, nil
	case "socks4", "socks4a":
		return dialSOCKS4(ctx, d, p, target)
	case "http":
		return dialHTTPConnect(ctx, d, p, target)
	}
	return nil, fmt.Errorf("unknown proxy scheme %q", p.Scheme)
}

// contextDialer adapts a Dialer to x/net/proxy's.
type contextDialer struct{ d Dialer }

func (c contextDialer) Dial(network, addr string) (net.Conn, error) {
	return c.d.DialContext(context.Background(), network, addr)
}

func (c contextDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.d.DialContext(ctx, network, addr)
}

// dialSOCKS4 speaks SOCKS4 (the client resolves the name) or SOCKS4a (the
// proxy does).
func dialSOCKS4(ctx context.Context, d Dialer, p *url.URL, target string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(target)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port in %q", target)
	}
	ip, err := netip.ParseAddr(host)
	var name string
	switch {
	case err == nil && !ip.Unmap().Is4():
		return nil, fmt.Errorf("SOCKS4 proxy %s cannot reach IPv6 address %s", p.Host, host)
	case err == nil:
		ip = ip.Unmap()
	case p.Scheme == "socks4a":
		ip, name = netip.AddrFrom4([4]byte{0, 0, 0, 1}), host
	default:
		r := net.DefaultResolver
		if nd, ok := d.(*net.Dialer); ok && nd.Resolver != nil {
			r = nd.Resolver
		}
		ips, err := r.LookupNetIP(ctx, "ip4", host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("SOCKS4 needs an IPv4 address for %s (use socks4a to let the proxy resolve it): %v", host, err)
		}
		ip = ips[0]
	}
	c, err := d.DialContext(ctx, "tcp", p.Host)
	if err != nil {
		return nil, fmt.Errorf("SOCKS4 proxy %s: %w", p.Host, err)
	}
	stop := deadlineFrom(ctx, c)
	defer stop()
	req := []byte{4, 1, 0, 0}
	binary.BigEndian.PutUint16(req[2:], uint16(port))
	a := ip.As4()
	req = append(req, a[:]...)
	if p.User != nil {
		req = append(req, p.User.Username()...)
	}
	req = append(req, 0)
	if name != "" {
		req = append(append(req, name...), 0)
	}
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, fmt.Errorf("SOCKS4 proxy %s: %w", p.Host, err)
	}
	var resp [8]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("SOCKS4 proxy %s: no reply: %w", p.Host, err)
	}
	if resp[1] != 90 {
		c.Close()
		return nil, fmt.Errorf("SOCKS4 proxy %s refused the connection to %s (code %d)", p.Host, target, resp[1])
	}
	return c, nil
}

// dialHTTPConnect opens a tunnel with HTTP CONNECT.
func dialHTTPConnect(ctx context.Context, d Dialer, p *url.URL, target string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", p.Host)
	if err != nil {
		return nil, fmt.Errorf("HTTP proxy %s: %w", p.Host, err)
	}
	stop := deadlineFrom(ctx, c)
	defer stop()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if p.User != nil {
		pw, _ := p.User.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(p.User.Username()+":"+pw)) + "\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("HTTP proxy %s: %w", p.Host, err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("HTTP proxy %s: bad answer to CONNECT: %w", p.Host, err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("HTTP proxy %s refused CONNECT %s: %s", p.Host, target, resp.Status)
	}
	if br.Buffered() > 0 {
		// The server spoke first (SSH servers do) and its bytes came with
		// the proxy's answer: read them before the socket.
		return &bufferedConn{Conn: c, r: br}, nil
	}
	return c, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// NetConn returns the proxied TCP connection.
func (c *bufferedConn) NetConn() net.Conn { return c.Conn }

// deadlineFrom applies ctx's deadline to c for the proxy handshake; the
// returned func clears it.
func deadlineFrom(ctx context.Context, c net.Conn) func() {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	} else {
		c.SetDeadline(time.Now().Add(connectTimeout))
	}
	return func() { c.SetDeadline(time.Time{}) }
}
