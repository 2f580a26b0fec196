package config

import (
	"strings"
	"testing"
	"time"
)

// control, log.format and shutdown_grace: their defaults, their values,
// and each mistake at its line with the fix.
func TestDaemonKeys(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("shunt.yaml", "rules:\n  - action: block\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.Socket != DefaultControlSocket || c.Control.Group != "" || c.Log.Format != LogText || c.ShutdownGrace.D != DefaultShutdownGrace {
		t.Errorf("defaults: control %+v, log.format %q, shutdown_grace %v", c.Control, c.Log.Format, c.ShutdownGrace.D)
	}

	c, err = e.parse("shunt.yaml", `rules:
  - action: block
control:
  socket: /run/s/ctl.sock
  group: wheel
log:
  format: json
shutdown_grace: 0s
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.Socket != "/run/s/ctl.sock" || c.Control.Group != "wheel" || c.Log.Format != LogJSON || c.ShutdownGrace.D != 0 || !c.ShutdownGrace.Set {
		t.Errorf("control %+v, log.format %q, shutdown_grace %+v", c.Control, c.Log.Format, c.ShutdownGrace)
	}

	_, err = e.parse("shunt.yaml", `rules:
  - action: block
control:
  socket: run/ctl.sock
  grup: wheel
log:
  format: yaml
shutdown_grace: soon
`)
	for _, want := range []string{
		`shunt.yaml:4: control.socket "run/ctl.sock" is not an absolute path: write e.g. /run/shunt/shunt.sock`,
		`shunt.yaml:5: unknown key "grup" in control: did you mean "group"?`,
		`shunt.yaml:7: log.format "yaml" is not a format: use text or json`,
		`shunt.yaml:8: shutdown_grace: "soon" is not a duration`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
	_, err = e.parse("shunt.yaml", "shutdown_grace: never\ncontrol:\n  socket: /"+strings.Repeat("s", 120)+"\n")
	for _, want := range []string{
		"shunt.yaml:1: shutdown_grace cannot be never",
		"shunt.yaml:3: control.socket", "more than a Unix socket's address holds",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v\nwant it to contain %q", err, want)
		}
	}
	if _, err := e.parse("shunt.yaml", "shutdown_graze: 5s\n"); err == nil || !strings.Contains(err.Error(), `shunt.yaml:1: unknown key "shutdown_graze": did you mean "shutdown_grace"?`) {
		t.Errorf("a misspelt shutdown_grace: %v", err)
	}
}

// Later layers override each key on its own: a user file's log.format
// keeps the global file's log.level, and errors name the layer's file.
func TestDaemonKeysLayers(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", `rules:
  - action: block
log:
  level: debug
control:
  group: shunt
shutdown_grace: 20s
`)
	user := write(t, dir, "user.yaml", `log:
  format: json
control:
  socket: /tmp/shunt.sock
`)
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if l.Log.Level != "debug" || l.Log.Format != LogJSON || l.Control.Socket != "/tmp/shunt.sock" || l.Control.Group != "shunt" || l.ShutdownGrace.D != 20*time.Second {
		t.Errorf("merged: log %+v, control %+v, shutdown_grace %v", l.Log, l.Control, l.ShutdownGrace.D)
	}
	bad := write(t, dir, "bad.yaml", "shutdown_grace: -3s\n")
	_, err = LoadLayers(Layers{Global: global, User: user, Extra: []string{bad}, Options: e.opts()})
	if err == nil || !strings.Contains(err.Error(), bad+`:1: shutdown_grace: "-3s" is not a duration`) {
		t.Errorf("a bad shutdown_grace in a later layer: %v", err)
	}
}
