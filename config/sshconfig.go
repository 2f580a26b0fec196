package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kevinburke/ssh_config"

	"github.com/shunt-dev/shunt/internal/sshdefaults"
)

// DefaultSSHConfigFiles are OpenSSH's client configurations, the user's
// first: for each key the first file that sets it wins, as in ssh(1).
func DefaultSSHConfigFiles() []string {
	return []string{"~/.ssh/config", "/etc/ssh/ssh_config"}
}

// sshConfigs is the parsed OpenSSH client configuration.
type sshConfigs []*ssh_config.Config

// loadSSHConfigs reads the files that exist, and says which.
func (c *Config) loadSSHConfigs(files []string) (sshConfigs, []string, error) {
	var out sshConfigs
	var read []string
	for _, f := range files {
		f = c.expandHome(f)
		data, err := c.machine.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		// As ssh(1): "Bad owner or permissions".
		if why := c.machine.othersMayChange(f); why != "" {
			return nil, nil, fmt.Errorf("ssh_config file %s is refused: %s", f, why)
		}
		sc, err := ssh_config.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, sc)
		read = append(read, f)
	}
	return out, read, nil
}

// defines reports whether some Host (or Match host) block names the alias
// other than as "*": a block for every host does not define one. Inside
// an Include that applies, nothing can be seen, so the alias may be
// defined there (sure is false).
func (s sshConfigs) defines(alias string) (defined, sure bool) {
	sure = true
	for _, c := range s {
		for _, h := range c.Hosts {
			if !h.Matches(alias) {
				continue
			}
			for _, n := range h.Nodes {
				if _, ok := n.(*ssh_config.Include); ok {
					sure = false
				}
			}
			for _, p := range h.Patterns {
				if p.String() != "*" {
					return true, true
				}
			}
		}
	}
	return false, sure
}

// get returns the first value set for key for the alias.
func (s sshConfigs) get(alias, key string) string {
	for _, c := range s {
		if v, err := c.Get(alias, key); err == nil && v != "" {
			return v
		}
	}
	return ""
}

// getAll returns every value of a key that accumulates (IdentityFile,
// CertificateFile), across files.
func (s sshConfigs) getAll(alias, key string) []string {
	var out []string
	for _, c := range s {
		if v, err := c.GetAll(alias, key); err == nil {
			out = append(out, v...)
		}
	}
	return out
}

// applySSHConfig fills the profile's unset keys from OpenSSH's client
// configuration for its host alias. Keys set in the profile win. A
// ProxyJump becomes a chain of generated profiles named "ssh_config:HOST".
func (c *Config) applySSHConfig(p *Profile) error {
	if c.sshConfigs == nil {
		files := c.sshConfigFiles
		if files == nil {
			files = DefaultSSHConfigFiles()
		}
		cfgs, read, err := c.loadSSHConfigs(files)
		if err != nil {
			return fmt.Errorf("ssh_config: %w", err)
		}
		c.sshConfigs, c.sshConfigRead = &cfgs, read
	}
	s := *c.sshConfigs
	alias := p.SSHConfig
	var errs []error
	bad := func(key, v, want string) {
		errs = append(errs, fmt.Errorf("ssh_config %s for host %q: %q is not %s", key, alias, v, want))
	}
	if len(p.Host) == 0 {
		h := s.get(alias, "HostName")
		if h == "" {
			h = alias
		}
		p.Host = StringList{c.expandTokens(h, alias, "", "")}
	}
	if p.Port == 0 {
		if v := s.get(alias, "Port"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad("Port", v, "a port number")
			}
			p.Port = n
		}
	}
	if p.User == "" {
		p.User = s.get(alias, "User")
	}
	remoteUser := p.User
	if remoteUser == "" {
		remoteUser = c.account.Name
	}
	if len(p.IdentityFiles) == 0 {
		for _, f := range s.getAll(alias, "IdentityFile") {
			p.IdentityFiles = append(p.IdentityFiles, c.expandTokens(f, alias, p.Host[0], remoteUser))
			p.filledFromSSHConfig("identity_files")
		}
	}
	if !p.IdentitiesOnly {
		p.IdentitiesOnly = strings.EqualFold(s.get(alias, "IdentitiesOnly"), "yes")
	}
	if len(p.CertificateFiles) == 0 {
		for _, f := range s.getAll(alias, "CertificateFile") {
			p.CertificateFiles = append(p.CertificateFiles, c.expandTokens(f, alias, p.Host[0], remoteUser))
			p.filledFromSSHConfig("certificate_files")
		}
	}
	if len(p.KnownHosts) == 0 {
		if v := s.get(alias, "UserKnownHostsFile"); v != "" && v != "none" {
			for _, f := range strings.Fields(v) {
				p.KnownHosts = append(p.KnownHosts, c.expandTokens(f, alias, p.Host[0], remoteUser))
				p.filledFromSSHConfig("known_hosts")
			}
		}
	}
	if p.HostKeyPolicy == "" {
		switch v := strings.ToLower(s.get(alias, "StrictHostKeyChecking")); v {
		case "", "yes":
		case "accept-new", "no", "off":
			// "no" would accept changed keys too; shunt never does.
			p.HostKeyPolicy = PolicyAcceptNew
		case "ask":
			p.HostKeyPolicy = PolicyAsk
		default:
			bad("StrictHostKeyChecking", v, "yes, accept-new, no or ask")
		}
	}
	if !p.KeepaliveInterval.Set {
		if v := s.get(alias, "ServerAliveInterval"); v != "" && v != "0" {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad("ServerAliveInterval", v, "a number of seconds")
			}
			p.KeepaliveInterval = Duration{D: time.Duration(n) * time.Second, Set: true}
		}
	}
	if p.KeepaliveCount == 0 {
		if v := s.get(alias, "ServerAliveCountMax"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				bad("ServerAliveCountMax", v, "a number")
			}
			p.KeepaliveCount = n
		}
	}
	if len(p.Ciphers) == 0 {
		if v := s.get(alias, "Ciphers"); v != "" {
			p.Ciphers = cipherList(v)
		}
	}
	if p.Jump == "" && p.Proxy == "" {
		if v := s.get(alias, "ProxyJump"); v != "" && v != "none" {
			jump, err := c.jumpChain(alias, v, p.File, p.Line)
			if err != nil {
				errs = append(errs, err)
			}
			p.Jump = jump
		}
	}
	return errors.Join(errs...)
}

// filledFromSSHConfig marks a key as filled from ssh_config.
func (p *Profile) filledFromSSHConfig(key string) {
	if p.fromSSHConfig == nil {
		p.fromSSHConfig = map[string]bool{}
	}
	p.fromSSHConfig[key] = true
}

// jumpChain turns "[user@]host[:port],…" into generated profiles, each
// jumping through the one before, and returns the last one's name. A
// generated profile is named after the whole chain up to it, so chains
// that share a hop do not share its route. A hop whose own ssh_config
// jumps back into the chain is a loop, reported as an error.
func (c *Config) jumpChain(alias, spec, file string, line int) (string, error) {
	if c.jumping == nil {
		c.jumping = map[string]bool{}
	}
	if c.jumping[alias] {
		return "", fmt.Errorf("ssh_config ProxyJump loops back to %q", alias)
	}
	c.jumping[alias] = true
	defer delete(c.jumping, alias)
	prev := ""
	var chain []string
	for _, hop := range strings.Split(spec, ",") {
		hop = strings.TrimSpace(hop)
		chain = append(chain, hop)
		user, hostport, ok := strings.Cut(hop, "@")
		if !ok {
			user, hostport = "", hop
		}
		host, port := hostport, 0
		if h, ps, err := splitHostPortLoose(hostport); err == nil && ps != "" {
			n, err := strconv.Atoi(ps)
			if err != nil {
				return "", fmt.Errorf("ssh_config ProxyJump %q: bad port in %q", spec, hop)
			}
			host, port = h, n
		}
		if c.jumping[host] {
			return "", fmt.Errorf("ssh_config ProxyJump loops: %q jumps through itself", host)
		}
		name := "ssh_config:" + strings.Join(chain, ",")
		if _, exists := c.Profile(name); !exists {
			// The first hop (no Jump yet) may jump on by its own
			// ssh_config, as in ssh(1); later hops follow the chain.
			jp := Profile{Name: name, SSHConfig: host, User: user, Port: port, Jump: prev, File: file, Line: line}
			if err := c.applySSHConfig(&jp); err != nil {
				return "", err
			}
			c.Profiles = append(c.Profiles, jp)
			c.generated++
		}
		prev = name
	}
	return prev, nil
}

// splitHostPortLoose splits "host:port" and "[v6]:port"; a bare host has no
// port.
func splitHostPortLoose(s string) (string, string, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return "", "", errors.New("missing ]")
		}
		return s[1:end], strings.TrimPrefix(s[end+1:], ":"), nil
	}
	if strings.Count(s, ":") == 1 {
		h, p, _ := strings.Cut(s, ":")
		return h, p, nil
	}
	return s, "", nil
}

// cipherList applies OpenSSH's Ciphers syntax: a list, or +list to append
// to the defaults, -list to remove from them, ^list to put first.
func cipherList(v string) []string {
	list := strings.Split(strings.TrimLeft(v, "+-^"), ",")
	def := sshdefaults.Ciphers
	switch v[0] {
	case '+':
		return append(append([]string{}, def...), list...)
	case '^':
		out := slices.Clone(list)
		for _, c := range def {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
		return out
	case '-':
		var out []string
		for _, c := range def {
			drop := false
			for _, l := range list {
				if c == l {
					drop = true
				}
			}
			if !drop {
				out = append(out, c)
			}
		}
		return out
	}
	return list
}

// expandTokens expands ~ and the ssh_config tokens %d (home), %u (local
// user), %h (host), %r (remote user), %n (alias) and %%.
func (c *Config) expandTokens(s, alias, host, remoteUser string) string {
	if host == "" {
		host = alias
	}
	r := strings.NewReplacer("%%", "%", "%d", c.account.Home, "%u", c.account.Name, "%h", host, "%r", remoteUser, "%n", alias)
	return c.expandHome(r.Replace(s))
}

// SSHConfigRead are the ssh_config files that exist and were read.
func (c *Config) SSHConfigRead() []string { return slices.Clone(c.sshConfigRead) }
