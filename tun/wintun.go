package tun

import (
	"fmt"
	"strings"
)

// The wintun.dll story. On Windows the TUN device is a wintun adapter, and
// wireguard-go drives it through golang.zx2c4.com/wintun, which loads
// wintun.dll at the first adapter it creates with LoadLibraryEx and
// LOAD_LIBRARY_SEARCH_APPLICATION_DIR|LOAD_LIBRARY_SEARCH_SYSTEM32: from the
// directory of shunt.exe, else from System32, never from the working
// directory or PATH. The DLL is not part of Windows and not ours to build:
// the release zip for Windows ships the official, signed one beside
// shunt.exe (.goreleaser.yaml, fetched by dist/wintun/fetch with a pinned
// SHA-256, in release builds only). Before the first adapter, Open finds
// the DLL where the loader would (findWintun), checks its Authenticode
// signature with WinVerifyTrust while holding it open against changes, and
// loads it by its full path (tun/wintun_windows.go), so the loader's later
// load by name gets that module. A missing DLL fails Open with where to get
// it and where to put it (wintunMissing).

// wintunDLL is the file golang.zx2c4.com/wintun loads.
const wintunDLL = "wintun.dll"

// wintunURL is where wintun comes from.
const wintunURL = "https://www.wintun.net/"

// winJoin joins a Windows directory and a file name (filepath.Join on the
// OS the tests run on would use its own separator).
func winJoin(dir, file string) string {
	if dir == "" || strings.HasSuffix(dir, `\`) || strings.HasSuffix(dir, "/") {
		return dir + file
	}
	return dir + `\` + file
}

// findWintun returns the wintun.dll the loader would load: the one in
// exeDir, the directory of the executable, else the one in system32.
// exists reports whether a file is there. If neither is, the error says
// where to get the DLL and where to put it.
func findWintun(exeDir, system32, goarch string, exists func(path string) (bool, error)) (string, error) {
	for _, dir := range []string{exeDir, system32} {
		if dir == "" {
			continue
		}
		p := winJoin(dir, wintunDLL)
		ok, err := exists(p)
		if err != nil {
			return "", fmt.Errorf("look for %s: %w", p, err)
		}
		if ok {
			return p, nil
		}
	}
	return "", wintunMissing(exeDir, goarch)
}

// wintunMissing is the error for a wintun.dll that is nowhere the loader
// looks.
func wintunMissing(exeDir, goarch string) error {
	return fmt.Errorf("%s is missing: shunt needs it to create its network adapter on Windows. "+
		"It comes with shunt's release zip; else download wintun from %s, take wintun\\bin\\%s\\%s from the zip "+
		"and put it beside shunt.exe, as %s", wintunDLL, wintunURL, wintunArch(goarch), wintunDLL, winJoin(exeDir, wintunDLL))
}

// wintunArch is the directory of wintun's zip (wintun/bin/DIR/wintun.dll)
// that holds the DLL for a Go architecture.
func wintunArch(goarch string) string {
	switch goarch {
	case "386":
		return "x86"
	default: // amd64, arm64, arm
		return goarch
	}
}
