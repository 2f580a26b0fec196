package config

import (
	"fmt"

	"github.com/shunt-dev/shunt/internal/proxyurl"
)

// The words the configuration uses for actions, host-key policies and
// login methods. config checks them as words; the engine turns them into
// the router's and the broker's values (engine.Convert), and its tests
// check that every word accepted here converts.
const (
	ActionTunnel = "tunnel"
	ActionDirect = "direct"
	ActionBlock  = "block"

	// The words of a tunnel rule's on_tunnel_down.
	TunnelDownBlock  = "block"
	TunnelDownDirect = "direct"

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

// checkProxy checks a proxy URL as the broker will parse it.
func checkProxy(s string) error {
	_, err := proxyurl.Parse(s)
	return err
}
