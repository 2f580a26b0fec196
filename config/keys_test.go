package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// RuleKeys and ProfileKeys are the types' keys, in docs/config.md's order.
func TestKeysFollowTheReference(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		prefix string
		typ    reflect.Type
		keys   []string
	}{
		{"rules[].", reflect.TypeFor[Rule](), RuleKeys()},
		{"profiles[].", reflect.TypeFor[Profile](), ProfileKeys()},
	} {
		var tags []string
		for i := range c.typ.NumField() {
			if tag := c.typ.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
				tags = append(tags, tag)
			}
		}
		if a, b := slices.Sorted(slices.Values(tags)), slices.Sorted(slices.Values(c.keys)); !slices.Equal(a, b) {
			t.Errorf("%s keys %q, the type's %q", c.prefix, b, a)
		}
		var documented []string
		for line := range strings.Lines(string(doc)) {
			if rest, ok := strings.CutPrefix(line, "| `"+c.prefix); ok {
				k, _, _ := strings.Cut(rest, "`")
				documented = append(documented, k)
			}
		}
		if !slices.Equal(documented, c.keys) {
			t.Errorf("%s keys %q, docs/config.md's order %q", c.prefix, c.keys, documented)
		}
	}
}
