package config

// validateTunnelDown checks a rule's on_tunnel_down against its action and
// against fallback_direct, which says the same thing in the older word.
// tunnel is whether the rule is a valid tunnel rule.
func (c *Config) validateTunnelDown(r *Rule, label string, tunnel bool, errorAt func(string, int, string, ...any)) {
	if r.OnTunnelDown == "" {
		return
	}
	line := r.onTunnelDownLine
	if line == 0 {
		line = r.Line
	}
	switch r.OnTunnelDown {
	case TunnelDownBlock, TunnelDownDirect:
	default:
		errorAt(r.File, line, "%s: unknown on_tunnel_down %q: use block (refuse the flow, the default) or direct (connect it without the tunnel)", label, r.OnTunnelDown)
		return
	}
	if !tunnel {
		if checkAction(r.Action) == nil {
			errorAt(r.File, line, "%s: on_tunnel_down only applies to action: tunnel", label)
		}
		return
	}
	if r.FallbackDirect && r.OnTunnelDown == TunnelDownBlock {
		errorAt(r.File, line, "%s: on_tunnel_down: block contradicts fallback_direct: true (line %d): keep one of them (on_tunnel_down: direct is fallback_direct: true)", label, r.fallbackDirectLine)
	}
}
