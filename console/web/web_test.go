package web

import (
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// importRE finds the module specifiers of static imports and re-exports,
// minified or not: `from "./x.js"`, `from"./x.mjs"`, `import "./x.js"`.
var importRE = regexp.MustCompile(`(?:^|[;\s}])(?:from|import)\s*["']([^"'\s]+)["']`)

// TestEmbeddedImports follows every import from app.js and every file
// index.html refers to, and wants each in the embedded FS: a file the
// pages need but the embed pattern misses would 404 only in a browser.
func TestEmbeddedImports(t *testing.T) {
	refs := htmlRefs(t)
	if len(refs) == 0 {
		t.Fatal("index.html refers to no file")
	}
	seen := map[string]bool{}
	var walk func(file, from string)
	walk = func(file, from string) {
		if seen[file] {
			return
		}
		seen[file] = true
		b, err := fs.ReadFile(FS, file)
		if err != nil {
			t.Errorf("%s refers to %s, which is not in the embedded FS: %v", from, file, err)
			return
		}
		if !strings.HasSuffix(file, ".js") && !strings.HasSuffix(file, ".mjs") {
			return
		}
		for _, m := range importRE.FindAllStringSubmatch(string(b), -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				t.Errorf("%s imports %q: only relative imports resolve without an import map, which the CSP forbids", file, spec)
				continue
			}
			walk(path.Join(path.Dir(file), spec), file)
		}
	}
	for _, r := range refs {
		walk(r, "index.html")
	}
	for _, want := range []string{"app.js", "vendor/preact/preact.mjs", "vendor/preact/hooks.mjs", "vendor/htm/htm.mjs"} {
		if !seen[want] {
			t.Errorf("the pages never load %s", want)
		}
	}
	// Every script in the FS is one the pages load: a stray file would be
	// one nobody tests.
	fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".mjs")) && !seen[p] {
			t.Errorf("%s is embedded but no page imports it", p)
		}
		return nil
	})
}

// htmlRefs returns the local files index.html loads, and fails the test
// on anything the CSP (default-src 'self') would refuse: inline scripts
// and styles, style and on* attributes, and other origins.
func htmlRefs(t *testing.T) []string {
	t.Helper()
	b, err := fs.ReadFile(FS, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("index.html: <%s %s=...>: inline styles and handlers break the CSP", n.Data, a.Key)
				}
			}
			switch n.Data {
			case "script":
				if attrs["src"] == "" {
					t.Errorf("index.html: an inline <script> (type %q): the CSP refuses it; put it in a .js file", attrs["type"])
				}
			case "style":
				t.Error("index.html: an inline <style>: the CSP refuses it; put it in style.css")
			}
			for _, k := range []string{"src", "href"} {
				v, ok := attrs[k]
				if !ok || n.Data == "a" {
					continue
				}
				if strings.Contains(v, ":") || strings.HasPrefix(v, "/") {
					t.Errorf("index.html: <%s %s=%q>: pages load only relative URLs of their own origin", n.Data, k, v)
					continue
				}
				refs = append(refs, path.Clean(v))
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(doc)
	return refs
}

// TestScriptsCSP looks in our own scripts for what the CSP or the base
// path would break: eval, inline styles, absolute URLs.
func TestScriptsCSP(t *testing.T) {
	bad := []struct {
		re  *regexp.Regexp
		why string
	}{
		{regexp.MustCompile(`\beval\s*\(|new\s+Function\s*\(`), "eval needs 'unsafe-eval'"},
		{regexp.MustCompile(`\bstyle=`), "a style attribute needs 'unsafe-inline'; use a class"},
		{regexp.MustCompile(`["'\x60]/(api|login|console)\b`), "an absolute path breaks the console under /console/; use a relative URL"},
		{regexp.MustCompile(`https?://[a-z0-9.-]+(:\d+)?/`), "the pages load nothing from the network"},
		{regexp.MustCompile(`\.innerHTML\s*=`), "innerHTML: let Preact build the DOM"},
	}
	files, err := fs.Glob(FS, "*.js")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		b, _ := fs.ReadFile(FS, f)
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "//") {
				continue
			}
			for _, c := range bad {
				if c.re.MatchString(line) {
					t.Errorf("%s:%d: %s: %s", f, i+1, c.why, strings.TrimSpace(line))
				}
			}
		}
	}
}
