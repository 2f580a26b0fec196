// Package proxyurl parses the proxy URLs of shunt's configuration. config
// checks them with it and the broker dials with its result, so the two
// can never disagree on what a proxy URL is.
package proxyurl

import (
	"errors"
	"fmt"
	"net/url"
)

// Parse parses socks4://host:port, socks4a://host:port,
// socks5://[user:pass@]host:port or http://[user:pass@]host:port.
//
// No error repeats the text: a URL that parsed other than meant
// ("http:/user:secret@proxy", "socks5://u:p@h#x") holds the password in a
// part that url.Redacted does not hide, and url's own errors quote it all.
// The messages name the scheme and the host only.
func Parse(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("proxy URL is malformed: write scheme://[user:password@]host:port (percent-encode special characters in the password)")
	}
	switch u.Scheme {
	case "socks4", "socks4a", "socks5", "http":
	default:
		return nil, fmt.Errorf("proxy URL has the unknown scheme %q: write socks4://, socks4a://, socks5:// or http://, then [user:password@]host:port", u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" || u.Path != "" || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("proxy URL %s://%s is not of the form %s://[user:password@]host:port, e.g. %s://proxy.example:1080", u.Scheme, u.Host, u.Scheme, u.Scheme)
	}
	return u, nil
}
