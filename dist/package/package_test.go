// Package pkg holds no code: its test keeps the two descriptions of the
// .deb/.rpm, .goreleaser.yaml's nfpms (releases) and nfpm.yaml (CI), equal.
package pkg

import (
	"os"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// nfpmPackage is the part of a package description that both files state.
type nfpmPackage struct {
	Maintainer  string            `yaml:"maintainer"`
	Description string            `yaml:"description"`
	Vendor      string            `yaml:"vendor"`
	Homepage    string            `yaml:"homepage"`
	Section     string            `yaml:"section"`
	Priority    string            `yaml:"priority"`
	Depends     []string          `yaml:"depends"`
	Recommends  []string          `yaml:"recommends"`
	Contents    []map[string]any  `yaml:"contents"`
	Scripts     map[string]string `yaml:"scripts"`
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestPackageNfpmMatchesGoreleaser(t *testing.T) {
	var ci nfpmPackage
	readYAML(t, "nfpm.yaml", &ci)
	var gr struct {
		Nfpms []struct {
			nfpmPackage `yaml:",inline"`
			Bindir      string `yaml:"bindir"`
		} `yaml:"nfpms"`
	}
	readYAML(t, "../../.goreleaser.yaml", &gr)
	if len(gr.Nfpms) != 1 {
		t.Fatalf(".goreleaser.yaml: %d nfpms entries, want 1", len(gr.Nfpms))
	}
	rel := gr.Nfpms[0].nfpmPackage
	// The binary: goreleaser adds it from the build, into bindir.
	if len(ci.Contents) == 0 || ci.Contents[0]["dst"] != "/usr/bin/shunt" {
		t.Fatalf("nfpm.yaml: the first content is %v, want the binary at /usr/bin/shunt", ci.Contents[0])
	}
	if gr.Nfpms[0].Bindir != "/usr/bin" {
		t.Errorf(".goreleaser.yaml: nfpms bindir %q, want /usr/bin", gr.Nfpms[0].Bindir)
	}
	ci.Contents = ci.Contents[1:]
	if !reflect.DeepEqual(ci, rel) {
		t.Errorf("dist/package/nfpm.yaml and .goreleaser.yaml's nfpms describe different packages: make them the same\n nfpm.yaml:  %+v\n goreleaser: %+v", ci, rel)
	}
	for _, c := range rel.Contents {
		if c["dst"] == "/etc/shunt/shunt.yaml" && c["type"] != "config|noreplace" {
			t.Errorf("/etc/shunt/shunt.yaml has type %v, want config|noreplace", c["type"])
		}
	}
}
