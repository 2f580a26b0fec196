package config_test

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

// referenceFile is the configuration reference, relative to this package.
const referenceFile = "../docs/config.md"

// keyPaths lists the configuration keys that t's struct tree reads, by
// reflection over the yaml tags: "profiles[].proxy" for a field of a list
// of structs, "dns.mode" for a nested struct, "x.*" for a map's values.
// A struct with no yaml-tagged field (Duration, Port, Destination...) is
// one value, a leaf; fields tagged "-" or untagged are not keys.
func keyPaths(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			if isSection(t.Elem()) {
				walk(t.Elem(), prefix+"[]")
				return
			}
		case reflect.Map:
			if isSection(t.Elem()) {
				walk(t.Elem(), prefix+".*")
				return
			}
		case reflect.Struct:
			if isSection(t) {
				for i := 0; i < t.NumField(); i++ {
					f := t.Field(i)
					name := yamlName(f)
					if name == "" {
						continue
					}
					p := name
					if prefix != "" {
						p = prefix + "." + name
					}
					walk(f.Type, p)
				}
				return
			}
		}
		out = append(out, prefix)
	}
	walk(t, "")
	sort.Strings(out)
	return out
}

// isSection reports whether t (through pointers, slices and maps) is a
// struct with keys of its own.
func isSection(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		return isSection(t.Elem())
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		if yamlName(t.Field(i)) != "" {
			return true
		}
	}
	return false
}

// yamlName is the key of an exported field with a yaml tag, or "".
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, ok := f.Tag.Lookup("yaml")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" || name == "" {
		return ""
	}
	return name
}

// keyRow is a row of a reference table whose first cell is a key path
// in backticks: | `profiles[].proxy` | string | ...
var keyRow = regexp.MustCompile("^\\|\\s*`([a-z0-9_\\[\\]\\.\\*]+)`\\s*\\|")

// documentedKeys returns the key paths of the table between the markers
// <!-- keys:TREE --> and <!-- /keys:TREE --> in doc, and whether the
// markers are there.
func documentedKeys(doc, tree string) ([]string, bool) {
	start := "<!-- keys:" + tree + " -->"
	end := "<!-- /keys:" + tree + " -->"
	i := strings.Index(doc, start)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return nil, false
	}
	var out []string
	for _, line := range strings.Split(doc[i+len(start):j], "\n") {
		if m := keyRow.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			out = append(out, m[1])
		}
	}
	sort.Strings(out)
	return out, true
}

// referenceTrees are the configuration struct trees docs/config.md must
// document, each in its own marked table. The gateway's configuration is
// read without struct tags; gateway's TestReferenceCoversEveryKey checks
// its table (keys:gateway) against the keys its parser reads.
var referenceTrees = []struct {
	tree string
	typ  reflect.Type
}{
	{"shunt", reflect.TypeOf(config.Config{})},
}

// checkReference compares the keys of typ with the keys documented for
// tree in doc, and reports each difference.
func checkReference(t *testing.T, doc, tree string, typ reflect.Type) {
	t.Helper()
	documented, ok := documentedKeys(doc, tree)
	if !ok {
		t.Fatalf("%s has no <!-- keys:%s --> ... <!-- /keys:%s --> table", referenceFile, tree, tree)
	}
	code := keyPaths(typ)
	inDoc := map[string]int{}
	for _, k := range documented {
		inDoc[k]++
	}
	inCode := map[string]bool{}
	for _, k := range code {
		inCode[k] = true
		if inDoc[k] == 0 {
			t.Errorf("%s: key %s is read by %s but not documented: add a row | `%s` | type | default | ... | to the keys:%s table", referenceFile, k, typ, k, tree)
		}
	}
	for k, n := range inDoc {
		if !inCode[k] {
			t.Errorf("%s: key %s is documented in the keys:%s table but %s has no such key: remove or rename the row", referenceFile, k, tree, typ)
		}
		if n > 1 {
			t.Errorf("%s: key %s is documented %d times in the keys:%s table", referenceFile, k, n, tree)
		}
	}
}

func TestReferenceCoversEveryKey(t *testing.T) {
	b, err := os.ReadFile(referenceFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range referenceTrees {
		checkReference(t, string(b), r.tree, r.typ)
	}
}

func TestReferenceKeyPaths(t *testing.T) {
	type leaf struct{ N int }
	type inner struct {
		A    string `yaml:"a"`
		Skip int    `yaml:"-"`
	}
	type tree struct {
		Plain  string           `yaml:"plain"`
		In     inner            `yaml:"in"`
		List   []inner          `yaml:"list"`
		Ptr    *inner           `yaml:"ptr"`
		Map    map[string]inner `yaml:"map"`
		Leaf   leaf             `yaml:"leaf"`
		Leaves []leaf           `yaml:"leaves"`
		Opt    string           `yaml:"opt,omitempty"`
		none   string
		Untag  string
	}
	_ = tree{}.none
	got := strings.Join(keyPaths(reflect.TypeOf(tree{})), " ")
	want := "in.a leaf leaves list[].a map.*.a opt plain ptr.a"
	if got != want {
		t.Errorf("keyPaths = %q, want %q", got, want)
	}
	doc := "x\n<!-- keys:t -->\n| key | type |\n|---|---|\n| `a.b` | int |\n| `c[].d` | string |\nnot a row `e`\n<!-- /keys:t -->\n| `outside` | x |\n"
	keys, ok := documentedKeys(doc, "t")
	if !ok || strings.Join(keys, " ") != "a.b c[].d" {
		t.Errorf("documentedKeys = %v, %v", keys, ok)
	}
	if _, ok := documentedKeys(doc, "gateway"); ok {
		t.Error("documentedKeys found markers that are not there")
	}
}
