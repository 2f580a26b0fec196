package gateway

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/config.md documents exactly the keys the configuration reads.
func TestReferenceCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start, end := strings.Index(doc, "<!-- keys:gateway -->"), strings.Index(doc, "<!-- /keys:gateway -->")
	if start < 0 || end < start {
		t.Fatal("docs/config.md has no <!-- keys:gateway --> ... <!-- /keys:gateway --> table")
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(doc[start:end], -1) {
		documented = append(documented, m[1])
	}
	for _, k := range configKeys {
		if !slices.Contains(documented, k) {
			t.Errorf("the gateway reads %q, which docs/config.md does not document", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(configKeys, k) {
			t.Errorf("docs/config.md documents %q, which the gateway does not read", k)
		}
	}
}
