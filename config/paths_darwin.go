package config

// The machine's paths of shunt where the configuration names none, each
// system's own (paths_*.go):
//
//   - GlobalFile is the machine's configuration, written by its
//     administrator;
//   - DefaultStateDir is state_dir when not set: where shunt keeps what
//     must survive a restart (the fake-IP table, the resolver's backup);
//   - DefaultControlSocket is the control socket's path when
//     control.socket names none (control.DefaultSocket).
//
// macOS has no /run and keeps daemons' state in /var/db.
const (
	GlobalFile           = "/etc/shunt/shunt.yaml"
	DefaultStateDir      = "/var/db/shunt"
	DefaultControlSocket = "/var/run/shunt/shunt.sock"
)
