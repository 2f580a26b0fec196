package config

import (
	"strings"
	"testing"
)

func TestFlowMemory(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"536870912", 512 << 20},
		{"512MiB", 512 << 20},
		{"512 MiB", 512 << 20},
		{"512M", 512 << 20},
		{"512mb", 512 << 20},
		{"65536KiB", 64 << 20},
		{"1.5GiB", 3 << 29},
		{"2G", 2 << 30},
	} {
		c, err := e.parse("shunt.yaml", "flow_memory: "+tc.in+"\n")
		if err != nil {
			t.Errorf("flow_memory: %s: %v", tc.in, err)
			continue
		}
		if !c.FlowMemory.Set || c.FlowMemory.Bytes != tc.want {
			t.Errorf("flow_memory: %s = %+v, want %d bytes", tc.in, c.FlowMemory, tc.want)
		}
	}

	// Not set: 0, for the engine to derive from the machine.
	c, err := e.parse("shunt.yaml", "rules:\n  - action: block\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.FlowMemory.Set || c.FlowMemory.Bytes != 0 {
		t.Errorf("flow_memory not written = %+v, want unset", c.FlowMemory)
	}

	for _, tc := range []struct{ in, want string }{
		{"lots", `shunt.yaml:2: flow_memory: "lots" is not an amount of memory: write e.g. 512MiB`},
		{"512XB", `shunt.yaml:2: flow_memory: "512XB" is not an amount of memory`},
		{"-5MiB", `shunt.yaml:2: flow_memory: "-5MiB" is not an amount of memory`},
		{"MiB", `shunt.yaml:2: flow_memory: "MiB" is not an amount of memory`},
		{"4MiB", "shunt.yaml:2: flow_memory 4MiB is below the smallest budget, 16MiB"},
		{"99999999TiB", `shunt.yaml:2: flow_memory: "99999999TiB" is more memory than any machine has`},
	} {
		_, err := e.parse("shunt.yaml", "rules:\n  - action: block\nflow_memory: "+tc.in+"\n")
		if err == nil || !strings.Contains(err.Error(), strings.Replace(tc.want, ":2:", ":3:", 1)) {
			t.Errorf("flow_memory: %s: error %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := e.parse("shunt.yaml", "flow_memroy: 1GiB\n"); err == nil || !strings.Contains(err.Error(), `did you mean "flow_memory"?`) {
		t.Errorf("a misspelt flow_memory: %v", err)
	}
}

// A later layer's flow_memory replaces an earlier one's; an error names the
// file that wrote it.
func TestFlowMemoryLayers(t *testing.T) {
	e := newTestEnv(t)
	dir := e.dir()
	global := write(t, dir, "global.yaml", "flow_memory: 1GiB\n")
	user := write(t, dir, "user.yaml", "rules:\n  - action: block\n")
	l, err := LoadLayers(Layers{Global: global, User: user, Options: e.opts()})
	if err != nil {
		t.Fatal(err)
	}
	if l.FlowMemory.Bytes != 1<<30 {
		t.Errorf("flow_memory of the global file only = %d, want 1 GiB", l.FlowMemory.Bytes)
	}
	user = write(t, dir, "user.yaml", "rules:\n  - action: block\nflow_memory: 256MiB\n")
	if l, err = LoadLayers(Layers{Global: global, User: user, Options: e.opts()}); err != nil {
		t.Fatal(err)
	}
	if l.FlowMemory.Bytes != 256<<20 {
		t.Errorf("flow_memory of both = %d, want the user file's 256 MiB", l.FlowMemory.Bytes)
	}
	user = write(t, dir, "user.yaml", "rules:\n  - action: block\nflow_memory: 1MiB\n")
	if _, err = LoadLayers(Layers{Global: global, User: user, Options: e.opts()}); err == nil || !strings.Contains(err.Error(), user+":3: flow_memory 1MiB is below") {
		t.Errorf("a bad flow_memory in the user file: %v, want its file and line", err)
	}
}
