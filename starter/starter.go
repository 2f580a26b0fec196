// Package starter writes the starter configuration `shunt init` produces:
// one profile and one tunnel rule per captured network, commented, using the
// keys package config reads.
package starter

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Options is what the starter configuration is made from.
type Options struct {
	Profile string // profile name; "gateway" when empty
	User    string // login on the gateway
	Host    string // gateway host name or address, or a Host of ssh_config
	// SSHConfig takes the profile from OpenSSH's client configuration
	// (Host is an alias there): ssh_config instead of host.
	SSHConfig  bool
	Port       int      // SSH port; 0 leaves the default (22, or ~/.ssh/config's)
	Identity   string   // private key file; empty leaves the defaults
	KnownHosts string   // known_hosts file; empty leaves the default
	Capture    []string // networks whose traffic goes through the gateway
	Ports      []string // ports or ranges ("993-995"); empty means every port
}

// Render returns the commented YAML for o.
func Render(o Options) ([]byte, error) {
	if o.Host == "" {
		return nil, errors.New("no gateway host: give USER@HOST")
	}
	if strings.ContainsAny(o.Host, " \t\r\n#\"'") || strings.ContainsAny(o.User, "\r\n") {
		return nil, fmt.Errorf("%q is not a host name or address", o.User+"@"+o.Host)
	}
	if len(o.Capture) == 0 {
		return nil, errors.New("nothing to capture: give --capture CIDR")
	}
	name := o.Profile
	if name == "" {
		name = "gateway"
	}
	var b strings.Builder
	b.WriteString("# Written by `shunt init`. Check it with `shunt check --config FILE`,\n")
	b.WriteString("# then start it with `sudo shunt up --config FILE`.\n\n")
	b.WriteString("# The SSH server traffic is carried through.\n")
	b.WriteString("profiles:\n")
	fmt.Fprintf(&b, "  - name: %s\n", quote(name))
	if o.SSHConfig {
		fmt.Fprintf(&b, "    # HostName, User, Port, IdentityFile, ProxyJump... from ssh_config's Host %s;\n", o.Host)
		b.WriteString("    # the keys set here win.\n")
		fmt.Fprintf(&b, "    ssh_config: %s\n", quote(o.Host))
	} else {
		fmt.Fprintf(&b, "    host: %s\n", quote(o.Host))
	}
	if o.User != "" {
		fmt.Fprintf(&b, "    user: %s\n", quote(o.User))
	}
	if o.Port != 0 {
		fmt.Fprintf(&b, "    port: %d\n", o.Port)
	}
	if o.Identity != "" {
		fmt.Fprintf(&b, "    identity_files: [%s]\n", quote(o.Identity))
	}
	if o.KnownHosts != "" {
		fmt.Fprintf(&b, "    known_hosts: %s\n", quote(o.KnownHosts))
	}
	b.WriteString("\n# What goes through it; everything else is left alone.\n")
	b.WriteString("rules:\n")
	b.WriteString("  - name: captured\n")
	b.WriteString("    destinations: [")
	for i, c := range o.Capture {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(c))
	}
	b.WriteString("]\n")
	if len(o.Ports) > 0 {
		b.WriteString("    ports: [")
		for i, p := range o.Ports {
			if i > 0 {
				b.WriteString(", ")
			}
			if _, err := strconv.Atoi(p); err == nil {
				b.WriteString(p)
			} else {
				b.WriteString(strconv.Quote(p))
			}
		}
		b.WriteString("]\n")
	} else {
		b.WriteString("    # ports: [25, 143, \"993-995\"]   # only these; absent means every port\n")
	}
	b.WriteString("    action: tunnel\n")
	fmt.Fprintf(&b, "    profile: %s\n", quote(name))
	return []byte(b.String()), nil
}

// quote returns s as a YAML double-quoted scalar (JSON string syntax is valid YAML).
func quote(s string) string { return strconv.Quote(s) }

// ErrExists is returned by Write when the file exists and force is false.
var ErrExists = errors.New("file exists")

// Write writes data to path atomically (a temporary file beside it, renamed)
// with the given mode. It refuses to replace an existing file unless force.
func Write(path string, data []byte, mode fs.FileMode, force bool) error {
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w; use --force to replace it, or --output FILE", path, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if !force {
		// Link fails if path appeared meanwhile: never replace without force.
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w; use --force to replace it, or --output FILE", path, ErrExists)
			}
			return err
		}
		return nil
	}
	return os.Rename(tmp, path)
}
