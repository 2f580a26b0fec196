package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Every command has a short line, a description and examples, and both
// shunt --help and the cobra tree list it.
func TestRootEveryCommandDocumented(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out, &out); code != 0 {
		t.Fatalf("shunt --help = %d", code)
	}
	for _, c := range shown(root) {
		if c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("shunt %s: Short %q, Long %q, Example %q: want all three", c.Name(), c.Short, c.Long, c.Example)
		}
		if !strings.Contains(out.String(), "shunt "+c.Name()+" ") {
			t.Errorf("shunt --help does not list %s", c.Name())
		}
	}
}

// A command's --help shows its description and examples before its flags.
func TestRootCommandHelp(t *testing.T) {
	for _, c := range commands() {
		if c.Hidden {
			continue
		}
		name := strings.Fields(c.Use)[0]
		var out, errOut bytes.Buffer
		if code := run([]string{name, "--help"}, &out, &errOut); code != 0 {
			t.Errorf("shunt %s --help = %d, stderr %q", name, code, errOut.String())
		}
		if !strings.Contains(out.String(), c.Example) || !strings.Contains(out.String(), "Usage of shunt "+name) {
			t.Errorf("shunt %s --help = %q: want the examples and the flags", name, out.String())
		}
	}
}

func TestRootUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"no-such"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown command "no-such"`) || strings.Contains(errOut.String(), "Error:") {
		t.Errorf("shunt no-such = %d, stderr %q", code, errOut.String())
	}
	if code := run([]string{"man"}, &out, &errOut); code != 2 {
		t.Errorf("shunt man = %d, want 2", code)
	}
}

func TestRootCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"completion", sh}, &out, &errOut); code != 0 || out.Len() == 0 {
			t.Fatalf("shunt completion %s = %d, stderr %q", sh, code, errOut.String())
		}
		if sh == "bash" {
			if _, err := exec.LookPath("bash"); err != nil {
				t.Log("no bash: not checking the syntax")
				continue
			}
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = &out
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("bash -n of the bash completion: %v\n%s", err, b)
			}
		}
	}
	// The scripts ask shunt itself (__complete): it knows every command.
	var out bytes.Buffer
	run([]string{"__complete", ""}, &out, &bytes.Buffer{})
	for _, c := range shown(newRoot(&bytes.Buffer{}, &bytes.Buffer{})) {
		if c.Name() != "help" && !strings.Contains(out.String(), c.Name()) {
			t.Errorf("completion of the commands misses %s: %q", c.Name(), out.String())
		}
	}
}

func TestRootProfileCompletion(t *testing.T) {
	var out bytes.Buffer
	run([]string{"__complete", "connect", "--global", "", "--user-config", "", "-c", "../../examples/mail.yaml", ""}, &out, &bytes.Buffer{})
	if !strings.Contains(out.String(), "office\n") {
		t.Errorf("completion of connect's profile: %q, want a profile and the directive", out.String())
	}
	out.Reset()
	run([]string{"__complete", "up", "--config", ""}, &out, &bytes.Buffer{})
	if !strings.Contains(out.String(), "yaml") {
		t.Errorf("completion after --config: %q, want YAML files", out.String())
	}
}

func TestRootManPages(t *testing.T) {
	dir := t.TempDir()
	var errOut bytes.Buffer
	if code := run([]string{"man", dir}, &bytes.Buffer{}, &errOut); code != 0 {
		t.Fatalf("shunt man = %d, %q", code, errOut.String())
	}
	names := []string{"shunt"}
	for _, c := range shown(newRoot(&bytes.Buffer{}, &bytes.Buffer{})) {
		if c.Name() != "help" {
			names = append(names, "shunt-"+c.Name())
		}
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n+".1"))
		if err != nil {
			t.Errorf("man page: %v", err)
			continue
		}
		if !bytes.Contains(b, []byte(".TH \"SHUNT\"")) || !bytes.Contains(b, []byte(".SH NAME")) {
			t.Errorf("%s.1 has no .TH or NAME section:\n%s", n, b)
		}
		// groff, where there is one, reads it without a warning.
		if _, err := exec.LookPath("groff"); err == nil {
			if out, err := exec.Command("groff", "-man", "-z", "-ww", filepath.Join(dir, n+".1")).CombinedOutput(); err != nil || len(out) > 0 {
				t.Errorf("groff of %s.1: %v %s", n, err, out)
			}
		}
	}
}

// shown is the commands help, completion and man pages show.
func shown(root *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, c := range root.Commands() {
		if !c.Hidden {
			out = append(out, c)
		}
	}
	return out
}

// A hidden command (a piece of the demo) is in none of them.
func TestRootHiddenCommands(t *testing.T) {
	var help, comp bytes.Buffer
	run([]string{"--help"}, &help, &help)
	run([]string{"__complete", ""}, &comp, &bytes.Buffer{})
	dir := t.TempDir()
	if code := run([]string{"man", dir}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("shunt man = %d", code)
	}
	for _, c := range commands() {
		if !c.Hidden {
			continue
		}
		name := strings.Fields(c.Use)[0]
		if strings.Contains(help.String(), name) || strings.Contains(comp.String(), name+"\t") {
			t.Errorf("hidden command %s is listed by --help or completion", name)
		}
		if _, err := os.Stat(filepath.Join(dir, "shunt-"+name+".1")); err == nil {
			t.Errorf("hidden command %s has a man page", name)
		}
	}
}

// The tree knows every command's flags, from the flag set the command
// parses: completion offers their names and the man pages list them,
// while the command still parses them itself.
func TestRootFlagsKnown(t *testing.T) {
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range commands() {
		if c.Hidden {
			continue
		}
		name := strings.Fields(c.Use)[0]
		fs := commandFlags(c)
		if fs == nil {
			t.Errorf("shunt %s: no flag set captured (does it call parseFlags first?)", name)
			continue
		}
		cc, _, err := root.Find([]string{name})
		if err != nil {
			t.Fatal(err)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if cc.Flags().Lookup(f.Name) == nil && cc.Flags().ShorthandLookup(f.Name) == nil {
				t.Errorf("shunt %s: cobra does not know -%s", name, f.Name)
			}
		})
	}
	// -c is --config's shorthand, not a flag of its own.
	if cc, _, _ := root.Find([]string{"check"}); cc.Flags().Lookup("config").Shorthand != "c" {
		t.Errorf("check: --config has no -c shorthand")
	}
	var out bytes.Buffer
	run([]string{"__complete", "init", "alice@gw", "--acc"}, &out, &bytes.Buffer{})
	if !strings.Contains(out.String(), "--accept\t") {
		t.Errorf("completion of init --acc: %q", out.String())
	}
	out.Reset()
	run([]string{"__complete", "gateway", "--host-key", ""}, &out, &bytes.Buffer{})
	if !strings.HasSuffix(strings.TrimSpace(out.String()), ":0") {
		t.Errorf("completion after --host-key: %q, want files (directive 0)", out.String())
	}
	out.Reset()
	run([]string{"__complete", "init", "--capture", ""}, &out, &bytes.Buffer{})
	if !strings.HasSuffix(strings.TrimSpace(out.String()), ":4") {
		t.Errorf("completion after --capture: %q, want no files (directive 4)", out.String())
	}
	dir := t.TempDir()
	if code := run([]string{"man", dir}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("shunt man failed")
	}
	for page, wants := range map[string][]string{
		"shunt-init.1":    {".SH OPTIONS", "--accept", "--known-hosts"},
		"shunt-check.1":   {".SH OPTIONS", `\fB-c\fP, \fB--config\fP`, "--user-config"},
		"shunt-gateway.1": {"--permit", "--authorized-keys"},
	} {
		b, _ := os.ReadFile(filepath.Join(dir, page))
		for _, w := range wants {
			if !bytes.Contains(b, []byte(w)) {
				t.Errorf("%s lacks %q", page, w)
			}
		}
	}
	// A default under the home directory reads ~/...: not this machine's.
	if home, _ := os.UserHomeDir(); home != "" {
		b, _ := os.ReadFile(filepath.Join(dir, "shunt-check.1"))
		if bytes.Contains(b, []byte(home+"/")) {
			t.Errorf("shunt-check.1 names this machine's home %s:\n%s", home, b)
		}
	}
}
