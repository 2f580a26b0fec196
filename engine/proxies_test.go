package engine

import (
	"testing"

	"github.com/shunt-dev/shunt/router"
)

// The router's refusal kinds convert to the proxies' Refusal values by
// number: each names the same refusal.
func TestRefusalKindsAgree(t *testing.T) {
	for k := router.RefusedFailed; k <= router.RefusedTimeout; k++ {
		err := &router.Refused{Kind: k}
		if s, h := (socksRefusal{err}).Refusal().String(), (httpRefusal{err}).Refusal().String(); s != k.String() || h != k.String() {
			t.Errorf("router %v is socks %v and http %v", k, s, h)
		}
	}
}
