package web

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/net/html"
)

// importRE finds the module specifiers of static imports and re-exports,
// minified or not: `from "./x.js"`, `from"./x.mjs"`, `import "./x.js"`.
var importRE = regexp.MustCompile(`(?:^|[;\s}])(?:from|import)\s*["']([^"'\s]+)["']`)

// TestEmbeddedImports follows every import from app.js and every file
// index.html refers to, and wants each in the embedded FS: a file the
// pages need but the embed pattern misses would 404 only in a browser.
func TestEmbeddedImports(t *testing.T) {
	seen, problems := pageProblems(FS)
	for _, p := range problems {
		t.Error(p)
	}
	for _, want := range []string{"app.js", "vendor/preact/preact.mjs", "vendor/preact/hooks.mjs", "vendor/htm/htm.mjs", "style.css"} {
		if !seen[want] {
			t.Errorf("the pages never load %s", want)
		}
	}
}

// TestPageProblemsCatch proves the check above finds what it looks for.
func TestPageProblemsCatch(t *testing.T) {
	for _, c := range []struct {
		name string
		fs   fstest.MapFS
		want string
	}{
		{"missing import", fstest.MapFS{
			"index.html": {Data: []byte(`<script type="module" src="app.js"></script>`)},
			"app.js":     {Data: []byte(`import { x } from "./gone.js";`)},
		}, "gone.js, which is not in the embedded FS"},
		{"bare import", fstest.MapFS{
			"index.html": {Data: []byte(`<script type="module" src="app.js"></script>`)},
			"app.js":     {Data: []byte(`import{h}from"preact";`)},
		}, `imports "preact"`},
		{"inline script", fstest.MapFS{
			"index.html": {Data: []byte(`<script type="importmap">{}</script>`)},
		}, "an inline <script>"},
		{"inline style", fstest.MapFS{
			"index.html": {Data: []byte(`<p style="color:red">x</p><style>p{}</style>`)},
		}, "inline styles"},
		{"other origin", fstest.MapFS{
			"index.html": {Data: []byte(`<script src="https://cdn.example/x.js"></script>`)},
		}, "only relative URLs"},
		{"unused script", fstest.MapFS{
			"index.html": {Data: []byte(`<p>x</p>`)},
			"stray.js":   {Data: []byte(``)},
		}, "stray.js is embedded but no page imports it"},
	} {
		_, problems := pageProblems(c.fs)
		if !strings.Contains(strings.Join(problems, "\n"), c.want) {
			t.Errorf("%s: problems %q, want one with %q", c.name, problems, c.want)
		}
	}
}

// pageProblems walks from index.html through every file it loads and
// every module those import. It returns the files seen, and what would
// break in a browser: a missing file, an import only an import map could
// resolve, anything the CSP (default-src 'self') refuses, a script that
// nothing loads.
func pageProblems(fsys fs.FS) (map[string]bool, []string) {
	var problems []string
	refs, hp := htmlRefs(fsys)
	problems = append(problems, hp...)
	seen := map[string]bool{}
	var walk func(file, from string)
	walk = func(file, from string) {
		if seen[file] {
			return
		}
		seen[file] = true
		b, err := fs.ReadFile(fsys, file)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s refers to %s, which is not in the embedded FS: %v", from, file, err))
			return
		}
		if !strings.HasSuffix(file, ".js") && !strings.HasSuffix(file, ".mjs") {
			return
		}
		for _, m := range importRE.FindAllStringSubmatch(string(b), -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, "./") && !strings.HasPrefix(spec, "../") {
				problems = append(problems, fmt.Sprintf("%s imports %q: only relative imports resolve without an import map, which the CSP forbids", file, spec))
				continue
			}
			walk(path.Join(path.Dir(file), spec), file)
		}
	}
	for _, r := range refs {
		walk(r, "index.html")
	}
	// Every script in the FS is one the pages load: a stray file would be
	// one nobody tests.
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".mjs")) && !seen[p] {
			problems = append(problems, p+" is embedded but no page imports it")
		}
		return nil
	})
	return seen, problems
}

// htmlRefs returns the local files index.html loads, and what in it the
// CSP would refuse: inline scripts and styles, style and on* attributes,
// and other origins.
func htmlRefs(fsys fs.FS) ([]string, []string) {
	b, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		return nil, []string{err.Error()}
	}
	doc, err := html.Parse(strings.NewReader(string(b)))
	if err != nil {
		return nil, []string{"index.html: " + err.Error()}
	}
	var refs, problems []string
	var visit func(n *html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode {
			attrs := map[string]string{}
			for _, a := range n.Attr {
				attrs[a.Key] = a.Val
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					problems = append(problems, fmt.Sprintf("index.html: <%s %s=...>: inline styles and handlers break the CSP", n.Data, a.Key))
				}
			}
			switch n.Data {
			case "script":
				if attrs["src"] == "" {
					problems = append(problems, fmt.Sprintf("index.html: an inline <script> (type %q): the CSP refuses it; put it in a .js file", attrs["type"]))
				}
			case "style":
				problems = append(problems, "index.html: an inline <style>: the CSP refuses inline styles; put it in style.css")
			}
			for _, k := range []string{"src", "href"} {
				v, ok := attrs[k]
				if !ok || n.Data == "a" {
					continue
				}
				if strings.Contains(v, ":") || strings.HasPrefix(v, "/") {
					problems = append(problems, fmt.Sprintf("index.html: <%s %s=%q>: pages load only relative URLs of their own origin", n.Data, k, v))
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
	if len(refs) == 0 {
		problems = append(problems, "index.html refers to no file")
	}
	return refs, problems
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
