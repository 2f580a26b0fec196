package main

import (
	"fmt"
	"strconv"
)

// pprofFlag is --pprof: serve Go's profiles on the control socket, at
// /debug/pprof/, to root and shunt's own user only. It once took a
// loopback address, which any local user could reach; an address now
// gets an error saying where the profiles went.
type pprofFlag bool

func (f *pprofFlag) String() string { return strconv.FormatBool(bool(*f)) }

func (f *pprofFlag) IsBoolFlag() bool { return true }

func (f *pprofFlag) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("--pprof takes no address any more: the profiles are served on the control socket (curl --unix-socket SOCKET http://shunt/debug/pprof/), to root and shunt's own user only")
	}
	*f = pprofFlag(b)
	return nil
}
