package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
)

// UserFile is the user's configuration: $XDG_CONFIG_HOME/shunt/shunt.yaml,
// or ~/.config/shunt/shunt.yaml, where ~ is the home directory of the user
// shunt acts for (Machine.ActingUser: under sudo, the user who ran it, and
// $XDG_CONFIG_HOME is not used).
func UserFile() string {
	return Machine{}.userFile()
}

// Layers are the files read, in order: the global file, the user's file,
// then the files given with --config. Global and User are skipped when
// absent; Extra files must exist.
type Layers struct {
	Global, User string
	Extra        []string
	// Contents, when it has a layer's path, is read in place of that
	// file, which need not exist (a check of an edit before it is
	// written). The path's directories are still judged as the file's
	// would be (othersMayChange).
	Contents map[string][]byte
	Options
}

// DefaultLayers are the standard files plus extra.
func DefaultLayers(extra []string) Layers {
	return Layers{Global: GlobalFile, User: UserFile(), Extra: extra}
}

// Layer is one file of the configuration and what became of it.
type Layer struct {
	Role  string `json:"role"` // global, user, config
	Path  string `json:"path"`
	Found bool   `json:"found"`
}

// Loaded is a merged configuration, the files it came from, and what the
// merge decided (to be shown at start).
type Loaded struct {
	*Config
	Layers []Layer
	Notes  []string
}

// LoadLayers reads every layer, merges them and validates the result. A
// malformed file in any layer fails the whole load, naming file and line:
// shunt never runs half-configured. The merge follows Tectia's model:
//   - profiles merge by name, and the later layer wins; for host keys the
//     more secure policy wins;
//   - if the global file defines rules (or proxy rules), later layers'
//     are ignored; otherwise the last layer that defines them wins;
//   - always_direct_applications add up; tun, log, control, metrics and
//     dns settings, state_dir, kill_switch and shutdown_grace of later layers override
//     earlier ones (a dns section as a whole).
func LoadLayers(l Layers) (*Loaded, error) {
	out := &Loaded{}
	m := l.Machine.withDefaults()
	var configs []*Config
	var errs []error
	read := func(role, path string, must bool) {
		if path == "" {
			return
		}
		data, err := m.ReadFile(path)
		if c, ok := l.Contents[path]; ok {
			data, err = c, nil
		}
		if errors.Is(err, os.ErrNotExist) && !must {
			out.Layers = append(out.Layers, Layer{Role: role, Path: path})
			return
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s config: %w", role, err))
			return
		}
		out.Layers = append(out.Layers, Layer{Role: role, Path: path, Found: true})
		if err := m.configFileSafe(path); err != nil {
			errs = append(errs, err)
			return
		}
		c, err := decode(path, data)
		if err != nil {
			errs = append(errs, err)
		}
		if c != nil {
			configs = append(configs, c)
		}
	}
	read("global", l.Global, false)
	read("user", l.User, false)
	for _, f := range l.Extra {
		read("config", f, true)
	}
	if len(configs) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(configs) == 0 {
		return nil, fmt.Errorf("no configuration: write %s or %s, or give --config FILE", l.Global, l.User)
	}
	merged, notes, mergeErrs := merge(configs, l.Global)
	errs = append(errs, mergeErrs...)
	merged.sshConfigFiles = l.SSHConfigFiles
	merged.setMachine(m, l.Daemon)
	// Every file's problems are reported together; any of them stops the
	// load.
	if err := errors.Join(append(errs, merged.validate())...); err != nil {
		return nil, err
	}
	out.Config, out.Notes = merged, notes
	return out, nil
}

// strictness orders host-key policies, most secure first.
func strictness(policy string) int {
	p, _ := hostKeyPolicy(policy)
	switch p {
	case PolicyStrict:
		return 0
	case PolicyAsk:
		return 1
	}
	return 2
}

func merge(configs []*Config, global string) (*Config, []string, []error) {
	var notes []string
	var errs []error
	m := &Config{Path: configs[len(configs)-1].Path}
	rulesFrom := ""
	globalRules, globalProxy := false, false
	for _, c := range configs {
		isGlobal := c.Path == global
		for _, p := range c.Profiles {
			i := slices.IndexFunc(m.Profiles, func(q Profile) bool { return q.Name == p.Name })
			if i < 0 {
				m.Profiles = append(m.Profiles, p)
				continue
			}
			old := m.Profiles[i]
			if old.File == p.File {
				errs = append(errs, &Error{File: p.File, Line: p.Line, Msg: fmt.Sprintf("profile %q is defined twice in this file: rename or remove one", p.Name)})
				continue
			}
			// The replacing profile may not weaken the host-key policy:
			// it keeps at least the replaced one's, set explicitly so that
			// not even its ssh_config can lower it.
			kept := policyName(old.HostKeyPolicy)
			switch {
			case p.HostKeyPolicy == "":
				p.HostKeyPolicy = kept
			case strictness(kept) < strictness(p.HostKeyPolicy):
				notes = append(notes, fmt.Sprintf("profile %q: keeping host_key_policy %s of %s over the weaker %s of %s",
					p.Name, kept, old.File, p.HostKeyPolicy, p.File))
				p.HostKeyPolicy = kept
			}
			notes = append(notes, fmt.Sprintf("profile %q of %s replaces the one of %s", p.Name, p.File, old.File))
			m.Profiles[i] = p
		}
		if len(c.Rules) > 0 {
			switch {
			case globalRules:
				notes = append(notes, fmt.Sprintf("the rules of %s are ignored: the global file %s defines the rules", c.Path, global))
			default:
				if rulesFrom != "" {
					notes = append(notes, fmt.Sprintf("the rules of %s replace those of %s", c.Path, rulesFrom))
				}
				m.Rules, rulesFrom, globalRules = c.Rules, c.Path, isGlobal
			}
		}
		if len(c.ProxyRules) > 0 {
			switch {
			case globalProxy:
				notes = append(notes, fmt.Sprintf("the proxy rules of %s are ignored: the global file %s defines them", c.Path, global))
			default:
				m.ProxyRules, globalProxy = c.ProxyRules, isGlobal
			}
		}
		for _, a := range c.AlwaysDirectApplications {
			if !slices.Contains(m.AlwaysDirectApplications, a) {
				m.AlwaysDirectApplications = append(m.AlwaysDirectApplications, a)
			}
		}
		if c.TUN.Name != "" {
			m.TUN.Name, m.TUN.File, m.TUN.Line = c.TUN.Name, c.TUN.File, c.TUN.Line
		}
		if c.TUN.MTU != 0 {
			m.TUN.MTU, m.TUN.File, m.TUN.Line = c.TUN.MTU, c.TUN.File, c.TUN.Line
		}
		if c.Log.Level != "" {
			m.Log.Level, m.Log.File, m.Log.Line = c.Log.Level, c.Log.File, c.Log.Line
		}
		if c.Log.Format != "" {
			m.Log.Format, m.Log.File, m.Log.Line = c.Log.Format, c.Log.File, c.Log.Line
		}
		if c.Control.Socket != "" {
			m.Control.Socket, m.Control.File, m.Control.Line = c.Control.Socket, c.Control.File, c.Control.Line
		}
		if c.Control.Group != "" {
			m.Control.Group, m.Control.File, m.Control.Line = c.Control.Group, c.Control.File, c.Control.Line
		}
		if c.ShutdownGrace.Set {
			m.ShutdownGrace, m.shutdownGraceFile = c.ShutdownGrace, c.shutdownGraceFile
		}
		if c.FlowMemory.Set {
			m.FlowMemory, m.flowMemoryFile = c.FlowMemory, c.flowMemoryFile
		}
		if c.Metrics.Listen != "" {
			m.Metrics = c.Metrics
		}
		if c.Console.Listen != "" || len(c.Console.AllowFrom) > 0 {
			m.Console = c.Console
		}
		if c.DNS.present {
			m.DNS = c.DNS
		}
		if c.StateDir != "" {
			m.StateDir, m.stateDirFile, m.stateDirLine = c.StateDir, c.stateDirFile, c.stateDirLine
		}
		if c.TUN.Enabled != nil {
			m.TUN.Enabled, m.TUN.File, m.TUN.Line = c.TUN.Enabled, c.TUN.File, c.TUN.Line
		}
		if len(c.SOCKSListen) > 0 {
			m.SOCKSListen, m.listenFile, m.socksLine = c.SOCKSListen, c.listenFile, c.socksLine
		}
		if len(c.HTTPProxyListen) > 0 {
			m.HTTPProxyListen, m.listenFile, m.httpLine = c.HTTPProxyListen, c.listenFile, c.httpLine
		}
		if len(c.AllowFrom) > 0 {
			m.AllowFrom, m.listenFile, m.allowLine = c.AllowFrom, c.listenFile, c.allowLine
		}
		if len(c.SOCKSUsers) > 0 {
			m.SOCKSUsers = c.SOCKSUsers
		}
		if len(c.StaticTunnels) > 0 {
			if len(m.StaticTunnels) > 0 {
				notes = append(notes, fmt.Sprintf("the static tunnels of %s replace those of %s", c.Path, m.StaticTunnels[0].File))
			}
			m.StaticTunnels = c.StaticTunnels
		}
		if c.killSwitchSet {
			m.KillSwitch, m.killSwitchSet = c.KillSwitch, true
		}
	}
	return m, notes, errs
}

func policyName(p string) string {
	if p == "" {
		return "strict"
	}
	return p
}
