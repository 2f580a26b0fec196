package platform

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// NewOSDNS chooses the manager of opts.Mode and reads the resolvers the
// system uses now; it changes nothing until Set. DNSModeAuto and
// DNSModeResolverDir write routing domains' files in /etc/resolver
// (dns_resolverdir.go); the Linux modes are refused. Call CleanUpDNS
// before it, at start.
func NewOSDNS(opts DNSOptions) (OSDNS, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	up := systemUpstreams(execRunner{}, opts.ResolvConf)
	switch opts.Mode {
	case DNSModeOff:
		return &offDNS{up: up}, nil
	case DNSModeAuto, DNSModeResolverDir:
		return newResolverDirDNS(DefaultResolverDir, os.Getpid(), up, opts.Log), nil
	}
	return nil, fmt.Errorf("dns.mode %s is Linux's: on macOS use %s or %s (a file per routing domain in %s), or %s", opts.Mode, DNSModeAuto, DNSModeResolverDir, DefaultResolverDir, DNSModeOff)
}

// CleanUpDNS removes the resolver files a run that did not stop cleanly
// left in /etc/resolver: those that start with shunt's marker, never
// another's. Call it at start, before NewOSDNS.
func CleanUpDNS(opts DNSOptions) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	removed, err := cleanUpResolverDir(DefaultResolverDir, processRunning)
	for _, path := range removed {
		opts.Log.WithField("file", path).Warn("DNS: removed a resolver file left by a run of shunt that did not stop cleanly")
	}
	return err
}

// processRunning says whether a process of pid exists (kill(pid, 0): EPERM
// is another user's, running too); this process counts as not running,
// as its own files of an earlier start are leftovers.
func processRunning(pid int) bool {
	if pid == os.Getpid() {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
