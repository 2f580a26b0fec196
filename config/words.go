package config

import (
	"errors"
	"fmt"
	"net/url"
)

// The words the configuration uses for actions, host-key policies and
// login methods. config checks them as words; the engine turns them into
// the router's and the broker's values (engine.Convert), and its tests
// check that every word accepted here converts.
const (
	ActionTunnel = "tunnel"
	ActionDirect = "direct"
	ActionBlock  = "block"

	PolicyStrict    = "strict"
	PolicyAcceptNew = "accept-new"
	PolicyAsk       = "ask"

	AuthPublicKey           = "publickey"
	AuthKeyboardInteractive = "keyboard-interactive"
	AuthPassword            = "password"
)

// DefaultAuthMethods are tried, in this order, by a profile that names
// none, as OpenSSH does.
var DefaultAuthMethods = []string{AuthPublicKey, AuthKeyboardInteractive, AuthPassword}

// checkAction checks a rule's action.
func checkAction(s string) error {
	switch s {
	case ActionTunnel, ActionDirect, ActionBlock:
		return nil
	}
	return fmt.Errorf("unknown action %q: use tunnel, direct or block", s)
}

// hostKeyPolicy checks a profile's host_key_policy and returns it with
// the default filled in ("" is strict).
func hostKeyPolicy(s string) (string, error) {
	switch s {
	case "":
		return PolicyStrict, nil
	case PolicyStrict, PolicyAcceptNew, PolicyAsk:
		return s, nil
	}
	return PolicyStrict, fmt.Errorf("unknown host key policy %q: use strict, accept-new or ask", s)
}

// checkProxy checks a proxy URL: socks4, socks4a, socks5 or http, with a
// host and a port. Neither the text nor url's own error goes in a message
// about a malformed URL: both would show a password.
func checkProxy(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("proxy URL is malformed: write scheme://[user:password@]host:port (percent-encode special characters in the password)")
	}
	switch u.Scheme {
	case "socks4", "socks4a", "socks5", "http":
	default:
		return fmt.Errorf("proxy %q: unknown scheme %q: use socks4, socks4a, socks5 or http", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" || u.Port() == "" {
		return fmt.Errorf("proxy %q: give host and port, e.g. %s://proxy.example:1080", u.Redacted(), u.Scheme)
	}
	return nil
}
