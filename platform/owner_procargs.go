package platform

import (
	"bytes"
	"errors"
	"fmt"
)

// errProcArgs: the sysctl's answer is not kern.procargs2's layout.
var errProcArgs = errors.New("malformed kern.procargs2 answer")

// parseProcArgs reads the executable path from the answer of macOS's
// sysctl kern.procargs2 for a process: argc (int32, host order), then the
// path the process was executed as, NUL-terminated, then NUL padding,
// argv and the environment, which are not read (they may hold secrets).
// The path is what execve was given, so it may be relative.
func parseProcArgs(b []byte) (string, error) {
	const argcSize = 4
	if len(b) <= argcSize {
		return "", fmt.Errorf("%w: %d bytes", errProcArgs, len(b))
	}
	path := b[argcSize:]
	i := bytes.IndexByte(path, 0)
	if i < 0 {
		return "", fmt.Errorf("%w: the executable path is not NUL-terminated", errProcArgs)
	}
	if i == 0 {
		return "", fmt.Errorf("%w: no executable path", errProcArgs)
	}
	return string(path[:i]), nil
}
