package config

// RuleKeys are the keys of a rule (rules[]), in the order of
// docs/config.md's table: the order the web console writes a new rule's
// keys in.
func RuleKeys() []string {
	return []string{"name", "sources", "destinations", "ports", "applications", "users",
		"action", "profile", "host_from_application", "on_tunnel_down", "fallback_direct"}
}

// ProfileKeys are the keys of a profile (profiles[]), in the order of
// docs/config.md's table.
func ProfileKeys() []string {
	return []string{"name", "host", "port", "user", "identity_files", "identities_only",
		"certificate_files", "known_hosts", "host_key_policy", "auth_methods", "ssh_config",
		"proxy", "jump", "connect_on_start", "connections", "keepalive_interval",
		"keepalive_count", "idle_timeout", "ciphers", "allowed_users"}
}
