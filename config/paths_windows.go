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
// Windows keeps a service's files under %ProgramData% (C:\ProgramData on
// every installation that has not moved it).
const (
	GlobalFile           = `C:\ProgramData\shunt\shunt.yaml`
	DefaultStateDir      = `C:\ProgramData\shunt\state`
	DefaultControlSocket = `C:\ProgramData\shunt\run\shunt.sock`
)
