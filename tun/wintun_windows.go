package tun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/windows"
)

// loadWintun finds wintun.dll where golang.zx2c4.com/wintun would load it
// from (findWintun), verifies its Authenticode signature and loads it by
// its full path. The file stays open, shared for reading only, from the
// check until it is loaded, so nobody can swap it in between. Once loaded,
// the wintun package's LoadLibraryEx("wintun.dll", ...) returns this module:
// a name without a path matches a loaded module of that base name first.
func loadWintun() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find shunt's executable, to find %s beside it: %w", wintunDLL, err)
	}
	system32, err := windows.GetSystemDirectory()
	if err != nil {
		return fmt.Errorf("find the system directory: %w", err)
	}
	path, err := findWintun(filepath.Dir(exe), system32, runtime.GOARCH, fileExists)
	if err != nil {
		return err
	}
	path16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	h, err := windows.CreateFile(path16, windows.GENERIC_READ, windows.FILE_SHARE_READ, nil,
		windows.OPEN_EXISTING, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer windows.CloseHandle(h)
	if err := verifySignature(path16, h); err != nil {
		return fmt.Errorf("%s is not signed validly (%w): replace it with the one from %s", path, err, wintunURL)
	}
	if _, err := windows.LoadLibraryEx(path, 0, windows.LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR|windows.LOAD_LIBRARY_SEARCH_SYSTEM32); err != nil {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return nil
}

func fileExists(path string) (bool, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	}
	return st.Mode().IsRegular(), nil
}

// verifySignature asks WinVerifyTrust whether the file open as h (at path)
// carries a valid Authenticode signature chaining to a root this machine
// trusts. Revocation is not checked over the network (a host shunt has not
// connected yet may have none), only against what Windows has cached.
func verifySignature(path *uint16, h windows.Handle) error {
	file := &windows.WinTrustFileInfo{
		Size:     uint32(unsafe.Sizeof(windows.WinTrustFileInfo{})),
		FilePath: path,
		File:     h,
	}
	data := &windows.WinTrustData{
		Size:                            uint32(unsafe.Sizeof(windows.WinTrustData{})),
		UIChoice:                        windows.WTD_UI_NONE,
		RevocationChecks:                windows.WTD_REVOKE_NONE,
		UnionChoice:                     windows.WTD_CHOICE_FILE,
		StateAction:                     windows.WTD_STATEACTION_VERIFY,
		FileOrCatalogOrBlobOrSgnrOrCert: unsafe.Pointer(file),
		ProvFlags:                       windows.WTD_CACHE_ONLY_URL_RETRIEVAL,
	}
	err := windows.WinVerifyTrustEx(windows.InvalidHWND, &windows.WINTRUST_ACTION_GENERIC_VERIFY_V2, data)
	data.StateAction = windows.WTD_STATEACTION_CLOSE
	windows.WinVerifyTrustEx(windows.InvalidHWND, &windows.WINTRUST_ACTION_GENERIC_VERIFY_V2, data)
	return err
}
