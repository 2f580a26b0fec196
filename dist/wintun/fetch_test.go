// Package wintun holds no code: its tests run dist/wintun/fetch on a zip
// made here (never wintun.net) and check that .goreleaser.yaml puts what
// it fetched beside shunt.exe in the windows zips only.
package wintun

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// fakeZip writes a zip laid out as wintun's (wintun/bin/ARCH/wintun.dll,
// wintun/LICENSE.txt) and returns its path and SHA-256.
func fakeZip(t *testing.T, arches ...string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wintun.zip")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := zip.NewWriter(f)
	add := func(name, body string) {
		fw, err := w.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write([]byte(body))
	}
	for _, a := range arches {
		add("wintun/bin/"+a+"/wintun.dll", "dll for "+a)
	}
	add("wintun/LICENSE.txt", "license")
	add("wintun/README.md", "readme")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, _ := os.ReadFile(path)
	sum := sha256.Sum256(b)
	return path, hex.EncodeToString(sum[:])
}

func fetch(t *testing.T, zipPath, sum, out string) (string, error) {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("dist/wintun/fetch needs %s", tool)
		}
	}
	cmd := exec.Command("./fetch")
	cmd.Env = append(os.Environ(), "WINTUN_URL=file://"+zipPath, "WINTUN_SHA256="+sum, "WINTUN_OUT="+out)
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func TestFetch(t *testing.T) {
	zipPath, sum := fakeZip(t, "amd64", "arm64", "x86", "arm")
	out := filepath.Join(t.TempDir(), "wintun")
	if msg, err := fetch(t, zipPath, sum, out); err != nil {
		t.Fatalf("fetch: %v\n%s", err, msg)
	}
	for file, want := range map[string]string{
		"amd64/wintun.dll": "dll for amd64",
		"arm64/wintun.dll": "dll for arm64",
		"LICENSE.txt":      "license",
	} {
		if b, err := os.ReadFile(filepath.Join(out, file)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", file, b, err, want)
		}
	}
}

func TestFetchRefusesAnotherZip(t *testing.T) {
	zipPath, _ := fakeZip(t, "amd64", "arm64")
	out := filepath.Join(t.TempDir(), "wintun")
	msg, err := fetch(t, zipPath, strings.Repeat("0", 64), out)
	if err == nil || !strings.Contains(msg, "not the pinned") {
		t.Errorf("fetch of a zip of another SHA-256: %v\n%s", err, msg)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("fetch left %s behind", out)
	}
}

func TestFetchNeedsEveryArch(t *testing.T) {
	zipPath, sum := fakeZip(t, "amd64")
	msg, err := fetch(t, zipPath, sum, filepath.Join(t.TempDir(), "wintun"))
	if err == nil || !strings.Contains(msg, "no wintun/bin/arm64/wintun.dll") {
		t.Errorf("fetch of a zip without arm64: %v\n%s", err, msg)
	}
}

// TestGoreleaserShipsWintun: the release runs fetch, and each windows zip
// (and no other) holds wintun.dll of its architecture beside shunt.exe,
// for the architectures fetch unpacks.
func TestGoreleaserShipsWintun(t *testing.T) {
	b, err := os.ReadFile("../../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var gr struct {
		Before struct {
			Hooks []string `yaml:"hooks"`
		} `yaml:"before"`
		Builds []struct {
			ID     string   `yaml:"id"`
			GOOS   []string `yaml:"goos"`
			GOARCH []string `yaml:"goarch"`
		} `yaml:"builds"`
		Archives []struct {
			ID    string   `yaml:"id"`
			IDs   []string `yaml:"ids"`
			Files []any    `yaml:"files"`
		} `yaml:"archives"`
	}
	if err := yaml.Unmarshal(b, &gr); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gr.Before.Hooks, "dist/wintun/fetch") {
		t.Errorf("before hooks %q do not run dist/wintun/fetch", gr.Before.Hooks)
	}
	script, err := os.ReadFile("fetch")
	if err != nil {
		t.Fatal(err)
	}
	windows := map[string]bool{}
	for _, bd := range gr.Builds {
		if slices.Contains(bd.GOOS, "windows") {
			if len(bd.GOOS) != 1 {
				t.Errorf("build %s makes windows and %q: windows needs a build of its own, for its zip to carry wintun.dll", bd.ID, bd.GOOS)
			}
			windows[bd.ID] = true
			for _, a := range bd.GOARCH {
				if !regexp.MustCompile(`\b` + a + `:`).Match(script) {
					t.Errorf("build %s makes windows/%s, whose wintun.dll dist/wintun/fetch does not unpack", bd.ID, a)
				}
			}
		}
	}
	const dll = "build/wintun/{{ .Arch }}/wintun.dll"
	for _, a := range gr.Archives {
		win := false
		for _, id := range a.IDs {
			win = win || windows[id]
		}
		if len(a.IDs) == 0 {
			t.Errorf("archive %s takes every build: name its builds (ids)", a.ID)
		}
		has := false
		for _, f := range a.Files {
			if m, ok := f.(map[string]any); ok && m["src"] == dll && m["strip_parent"] == true && m["dst"] == nil {
				has = true
			}
		}
		if win != has {
			t.Errorf("archive %s: windows %v, but carries %s at its top: %v", a.ID, win, dll, has)
		}
	}
}
