// Package docs holds no code: its tests keep the documents in this
// directory true to the Go sources.
package docs

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository, relative to this package.
const repoRoot = ".."

// goSources returns the text of the repository's Go files; tests selects
// the _test.go files instead of the others.
func goSources(t *testing.T, tests bool) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != ".." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") != tests {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		b.Write(data)
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// logBlocks returns the lines of the ```log blocks of a Markdown text,
// each with its line number.
func logBlocks(doc string) map[int]string {
	out := map[int]string{}
	in := false
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !in && trimmed == "```log":
			in = true
		case in && strings.HasPrefix(trimmed, "```"):
			in = false
		case in && trimmed != "":
			out[i+1] = trimmed
		}
	}
	return out
}

// quoted finds the msg="..." and error="..." fields of a logrus text line.
var quoted = regexp.MustCompile(`\b(msg|error)="((?:[^"\\]|\\.)*)"`)

// concat is where two string literals are joined with +.
var concat = regexp.MustCompile(`"\s*\+\s*"`)

// fragments are the literal parts of a quoted text, between the "…" that
// stand for what varies (a host, a fingerprint, a formatted number).
func fragments(text string) []string {
	var out []string
	for _, f := range strings.Split(text, "…") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func TestTroubleshootingLogLines(t *testing.T) {
	const file = "troubleshooting.md"
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// "a " +\n "b" in the code is the text "a b".
	src := concat.ReplaceAllString(goSources(t, false), "")
	lines := logBlocks(string(doc))
	if len(lines) == 0 {
		t.Fatalf("%s has no ```log block", file)
	}
	checked := 0
	for n, line := range lines {
		fields := quoted.FindAllStringSubmatch(line, -1)
		if len(fields) == 0 {
			t.Errorf("%s:%d: a log line with neither msg=\"…\" nor error=\"…\": %s", file, n, line)
		}
		for _, f := range fields {
			for _, frag := range fragments(f[2]) {
				checked++
				if !strings.Contains(src, frag) {
					t.Errorf("%s:%d: %s text %q occurs in no Go source: copy it again from the code, or remove the line", file, n, f[1], frag)
				}
			}
		}
	}
	t.Logf("%d log lines, %d quoted fragments checked", len(lines), checked)
}

func TestLogBlockParsing(t *testing.T) {
	doc := "x\n```log\nlevel=warning msg=\"a … b\" error=\"c\"\n```\n```\nmsg=\"not checked\"\n```\n"
	lines := logBlocks(doc)
	if len(lines) != 1 || lines[3] == "" {
		t.Fatalf("logBlocks = %v", lines)
	}
	var got []string
	for _, f := range quoted.FindAllStringSubmatch(lines[3], -1) {
		got = append(got, f[1]+":"+strings.Join(fragments(f[2]), "|"))
	}
	if strings.Join(got, " ") != "msg:a|b error:c" {
		t.Errorf("fields = %v", got)
	}
}

// testName is a test named in a document, in backticks.
var testName = regexp.MustCompile("`(Test[A-Z][A-Za-z0-9_]*)`")

// citedIn is a run of test names followed by the file that holds them:
// `TestA`, `TestB` (`dir/x_test.go`).
var citedIn = regexp.MustCompile("((?:`Test[A-Za-z0-9_]+`(?:, | and )?)+) \\(`([^`]+_test\\.go)`")

func TestComparisonCitesRealTests(t *testing.T) {
	const file = "comparison.md"
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := goSources(t, true)
	names := testName.FindAllStringSubmatch(string(doc), -1)
	if len(names) == 0 {
		t.Fatalf("%s cites no test", file)
	}
	for _, m := range names {
		if !strings.Contains(tests, "func "+m[1]+"(") {
			t.Errorf("%s cites %s, but no _test.go file has func %s(", file, m[1], m[1])
		}
	}
	pairs := 0
	for _, m := range citedIn.FindAllStringSubmatch(string(doc), -1) {
		src, err := os.ReadFile(filepath.Join(repoRoot, m[2]))
		if err != nil {
			t.Errorf("%s cites %s: %v", file, m[2], err)
			continue
		}
		for _, n := range testName.FindAllStringSubmatch(m[1], -1) {
			pairs++
			if !strings.Contains(string(src), "func "+n[1]+"(") {
				t.Errorf("%s says %s is in %s, but it is not there", file, n[1], m[2])
			}
		}
	}
	t.Logf("%d test names cited, %d with their file checked", len(names), pairs)
}
