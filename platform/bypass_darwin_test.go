package platform

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestDarwinRouteConstants: the portable copies of net/route.h's values
// (bypass_boundif.go) are darwin's.
func TestDarwinRouteConstants(t *testing.T) {
	for _, c := range []struct {
		name       string
		ours, unix int
	}{
		{"RTF_UP", rtfUp, unix.RTF_UP},
		{"RTF_GATEWAY", rtfGateway, unix.RTF_GATEWAY},
		{"RTF_HOST", rtfHost, unix.RTF_HOST},
		{"RTF_REJECT", rtfReject, unix.RTF_REJECT},
		{"RTF_BLACKHOLE", rtfBlackhole, unix.RTF_BLACKHOLE},
		{"RTF_IFSCOPE", rtfIfscope, unix.RTF_IFSCOPE},
		{"RTM_ADD", rtmAdd, unix.RTM_ADD},
		{"RTM_DELETE", rtmDelete, unix.RTM_DELETE},
		{"RTM_CHANGE", rtmChange, unix.RTM_CHANGE},
		{"RTM_NEWADDR", rtmNewAddr, unix.RTM_NEWADDR},
		{"RTM_DELADDR", rtmDelAddr, unix.RTM_DELADDR},
		{"RTM_IFINFO", rtmIfInfo, unix.RTM_IFINFO},
	} {
		if c.ours != c.unix {
			t.Errorf("%s: %#x here, %#x in x/sys/unix", c.name, c.ours, c.unix)
		}
	}
}
