package config

import (
	"strings"
	"testing"
)

// metrics.listen is off unless written, kept with its file and line, and
// must be host:port; a typo in the section names the key it resembles.
func TestMetrics(t *testing.T) {
	e := newTestEnv(t)
	c, err := e.parse("m.yaml", "rules:\n  - action: block\nmetrics:\n  listen: 127.0.0.1:9559\n")
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(Metrics{Listen: "127.0.0.1:9559", Line: 4, File: "m.yaml"}, c.Metrics); d != "" {
		t.Errorf("metrics (-want +got):\n%s", d)
	}
	c, err = e.parse("m.yaml", "rules:\n  - action: block\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != "" {
		t.Errorf("metrics.listen %q by default, want off", c.Metrics.Listen)
	}
	for _, ok := range []string{"[::1]:9559", "localhost:9559", ":9559", "0.0.0.0:9559", "Metrics.Example:80"} {
		if _, err := e.parse("m.yaml", "rules:\n  - action: block\nmetrics:\n  listen: \""+ok+"\"\n"); err != nil {
			t.Errorf("listen %s: %v", ok, err)
		}
	}
	for _, tt := range []struct{ yaml, want string }{
		{"metrics:\n  listen: 9559\n", `m.yaml:2: metrics.listen "9559" is not host:port: write host:port, e.g. 127.0.0.1:9559`},
		{"metrics:\n  listen: \"::1:9559\"\n", `m.yaml:2: metrics.listen "::1:9559" is not host:port`},
		{"metrics:\n  listen: 127.0.0.1:http\n", `m.yaml:2: metrics.listen "127.0.0.1:http": port "http" is not a port from 1 to 65535`},
		{"metrics:\n  listen: 127.0.0.1:0\n", `port "0" is not a port from 1 to 65535`},
		{"metrics:\n  listen: 127.0.0.1:70000\n", `port "70000" is not a port from 1 to 65535`},
		{"metrics:\n  listen: bad_host:9559\n", `m.yaml:2: metrics.listen "bad_host:9559": "bad_host" is not an IP address or host name`},
		{"metrics:\n  listn: 127.0.0.1:9559\n", `m.yaml:2: unknown key "listn" in metrics: did you mean "listen"?`},
		{"metrix:\n  listen: 127.0.0.1:9559\n", `m.yaml:1: unknown key "metrix": did you mean "metrics"?`},
	} {
		_, err := e.parse("m.yaml", tt.yaml+"rules:\n  - action: block\n")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %s", tt.yaml, err, tt.want)
		}
	}
}

// A layer that sets metrics.listen overrides the one before it, as the
// tun and log sections do.
func TestMetricsLayers(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", "rules:\n  - action: block\nmetrics:\n  listen: 127.0.0.1:9559\n")
	user := write(t, dir, "user.yaml", "metrics:\n  listen: 127.0.0.1:9600\n")
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(Metrics{Listen: "127.0.0.1:9600", Line: 2, File: user}, l.Metrics); d != "" {
		t.Errorf("metrics (-want +got):\n%s", d)
	}
	l, err = LoadLayers(Layers{Global: global, User: write(t, dir, "none.yaml", "tun:\n  mtu: 9000\n"), Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if l.Metrics.Listen != "127.0.0.1:9559" || l.Metrics.File != global {
		t.Errorf("metrics %+v, want the global file's", l.Metrics)
	}
}
