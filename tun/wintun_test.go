package tun

import (
	"errors"
	"strings"
	"testing"
)

func TestFindWintun(t *testing.T) {
	const exeDir, sys = `C:\Program Files\shunt`, `C:\Windows\system32`
	files := func(paths ...string) func(string) (bool, error) {
		return func(p string) (bool, error) {
			for _, q := range paths {
				if p == q {
					return true, nil
				}
			}
			return false, nil
		}
	}
	// Beside the executable first, as the loader looks.
	got, err := findWintun(exeDir, sys, "amd64", files(exeDir+`\wintun.dll`, sys+`\wintun.dll`))
	if err != nil || got != exeDir+`\wintun.dll` {
		t.Errorf("both present: %q, %v; want the executable's", got, err)
	}
	got, err = findWintun(exeDir, sys, "amd64", files(sys+`\wintun.dll`))
	if err != nil || got != sys+`\wintun.dll` {
		t.Errorf("only in system32: %q, %v", got, err)
	}
	// A drive's root already ends in a separator.
	got, err = findWintun(`D:\`, sys, "amd64", files(`D:\wintun.dll`))
	if err != nil || got != `D:\wintun.dll` {
		t.Errorf("at a root: %q, %v", got, err)
	}

	_, err = findWintun(exeDir, sys, "arm64", files())
	want := `wintun.dll is missing: shunt needs it to create its network adapter on Windows. ` +
		`It comes with shunt's release zip; else download wintun from https://www.wintun.net/, ` +
		`take wintun\bin\arm64\wintun.dll from the zip and put it beside shunt.exe, as C:\Program Files\shunt\wintun.dll`
	if err == nil || err.Error() != want {
		t.Errorf("missing:\n got %v\nwant %s", err, want)
	}
	if _, err := findWintun(exeDir, sys, "386", files()); err == nil || !strings.Contains(err.Error(), `wintun\bin\x86\wintun.dll`) {
		t.Errorf("386: %v", err)
	}

	boom := errors.New("access denied")
	_, err = findWintun(exeDir, sys, "amd64", func(string) (bool, error) { return false, boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), exeDir+`\wintun.dll`) {
		t.Errorf("a failed look: %v", err)
	}
}
