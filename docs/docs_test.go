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
