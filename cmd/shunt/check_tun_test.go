package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/tun"
)

// shunt check applies the OS's rules for tun.name (tun.CheckName, which
// config leaves to tun) and reports a refused name at its file and line,
// unless there is no TUN.
func TestCheckTUNName(t *testing.T) {
	fixedHome(t)
	const head = "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: tunnel\n    profile: p\n"
	for _, tc := range []struct {
		name, tunSection string
		want             string // stderr; "" = check passes
	}{
		{"default name", "", ""},
		{"this OS's default", "tun:\n  name: " + tun.DefaultName + "\n", ""},
		// '/' no OS takes in a device's name.
		{"refused", "tun:\n  mtu: 1500\n  name: bad/name\n", fmt.Sprintf(":8: tun.name %v\n", tun.CheckName("bad/name"))},
		{"no TUN", "socks_listen: 127.0.0.1:1080\ntun:\n  enabled: false\n  name: bad/name\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(head+tc.tunSection), 0o600)
			var out, errOut bytes.Buffer
			code := run([]string{"check", "--global", "", "--user-config", "", "-c", path}, &out, &errOut)
			if tc.want == "" {
				if code != 0 || errOut.Len() != 0 {
					t.Errorf("check = %d, stderr %q; want 0 and nothing", code, errOut.String())
				}
				return
			}
			if code != 1 || out.Len() != 0 {
				t.Errorf("check = %d, stdout %q; want 1 and nothing", code, out.String())
			}
			if got, want := errOut.String(), path+tc.want; got != want {
				t.Errorf("stderr:\n%s\nwant:\n%s", got, want)
			}
			if runtime.GOOS == "linux" && !strings.Contains(errOut.String(), `tun.name "bad/name" is not a valid interface name on linux: it holds '/'`) {
				t.Errorf("stderr %q does not say what Linux refuses", errOut.String())
			}
		})
	}
}
