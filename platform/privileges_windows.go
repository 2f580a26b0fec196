package platform

import (
	"errors"

	"golang.org/x/sys/windows"
)

// CheckPrivileges says whether this process may create the wintun
// adapter and change the routes: an elevated administrator's, or the
// service's (LocalSystem).
func CheckPrivileges() error {
	if windows.GetCurrentProcessToken().IsElevated() {
		return nil
	}
	return errors.New("shunt up needs an elevated administrator to create the wintun adapter and its routes: run it from an administrator's terminal, or as the service")
}
