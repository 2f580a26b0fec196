package engine

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// machineMemory is the memory shunt may use: the machine's RAM, or the
// limit of its cgroup (a container, a systemd unit with MemoryMax) when
// that is lower.
func machineMemory() (int64, bool) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, false
	}
	total := int64(si.Totalram) * int64(si.Unit)
	if limit, ok := cgroupMemoryMax(); ok && limit < total {
		total = limit
	}
	return total, total > 0
}

// cgroupMemoryMax is cgroup v2's memory.max of this process's cgroup
// ("max": none).
func cgroupMemoryMax() (int64, bool) {
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(self), "\n") {
		path, ok := strings.CutPrefix(line, "0::")
		if !ok {
			continue
		}
		b, err := os.ReadFile("/sys/fs/cgroup" + strings.TrimSpace(path) + "/memory.max")
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n, err == nil && n > 0
	}
	return 0, false
}
