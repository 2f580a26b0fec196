package router

import (
	"os"
	"path/filepath"
	"time"
)

// systemConnectTimeout is the timeout this machine's kernel gives a TCP
// connect, read once from /proc (the values of shunt's network namespace,
// which the captured applications share).
func systemConnectTimeout() (time.Duration, string) {
	return kernelConnectTimeout(func(name string) ([]byte, error) {
		return os.ReadFile(filepath.Join("/proc/sys/net/ipv4", name))
	})
}
