package config

import "errors"

// applySSHConfig fills the profile's unset keys from OpenSSH's client
// configuration for its ssh_config host alias.
func (c *Config) applySSHConfig(p *Profile) error {
	return errors.New("ssh_config is not read yet")
}
