package config

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// config is plain data and its checks: it imports no other shunt package
// (the engine converts it for the router and the broker), so that anything
// can read a configuration without pulling in the data path.
func TestConfigIsALeaf(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	// Leaves of their own, which the broker shares so that config checks
	// what it will use: the default ciphers and the proxy URL parser.
	allowed := map[string]bool{
		"github.com/shunt-dev/shunt/internal/sshdefaults": true,
		"github.com/shunt-dev/shunt/internal/proxyurl":    true,
		"github.com/shunt-dev/shunt/internal/netlayout":   true,
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "github.com/shunt-dev/shunt/") && !allowed[path] {
				t.Errorf("%s imports %s: config must not depend on other shunt packages", name, path)
			}
		}
	}
}
