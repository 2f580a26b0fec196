package edit

import (
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// rule is a new rule as the console would write it.
type rule struct {
	Name         string   `yaml:"name,omitempty"`
	Destinations []string `yaml:"destinations,omitempty"`
	Ports        []any    `yaml:"ports,omitempty"`
	Action       string   `yaml:"action,omitempty"`
	Profile      string   `yaml:"profile,omitempty"`
}

var web = rule{Name: "web", Destinations: []string{"10.2.0.0/16"}, Ports: []any{80, "8000-8100"}, Action: "tunnel", Profile: "office"}

const webText = "- name: web\n  destinations: [10.2.0.0/16]\n  ports: [80, 8000-8100]\n  action: tunnel\n  profile: office\n"

// indented is text with every non-empty line indented by n spaces.
func indented(text string, n int) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		if l != "" && l != "\n" {
			lines[i] = strings.Repeat(" ", n) + l
		}
	}
	return strings.Join(lines, "")
}

const rules3 = `# top comment
profiles:
  - name: office   # the gateway
    host: gw.example

rules:   # first match wins
  # refuse POP3
  - name: pop
    ports: [110]   # cleartext
    action: block

  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct
  - name: rest
    action: direct

# trailing comment
log:
  level: info
`

func TestSetSequence(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		items    []Item
		want     string
	}{
		{
			name:  "reorder keeps comments and gaps",
			in:    rules3,
			items: []Item{Keep(2), Keep(0), Keep(1)},
			want: `# top comment
profiles:
  - name: office   # the gateway
    host: gw.example

rules:   # first match wins
  - name: rest
    action: direct

  # refuse POP3
  - name: pop
    ports: [110]   # cleartext
    action: block
  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct

# trailing comment
log:
  level: info
`,
		},
		{
			name:  "move up one",
			in:    rules3,
			items: []Item{Keep(1), Keep(0), Keep(2)},
			want: strings.Replace(rules3, `  # refuse POP3
  - name: pop
    ports: [110]   # cleartext
    action: block

  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct
`, `  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct

  # refuse POP3
  - name: pop
    ports: [110]   # cleartext
    action: block
`, 1),
		},
		{
			name:  "insert a new rule second",
			in:    rules3,
			items: []Item{Keep(0), New(web), Keep(1), Keep(2)},
			want:  strings.Replace(rules3, "    action: block\n\n", "    action: block\n\n"+indented(webText, 2), 1),
		},
		{
			name:  "delete the middle rule with its comment",
			in:    rules3,
			items: []Item{Keep(0), Keep(2)},
			want: strings.Replace(rules3, `  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct
`, "", 1),
		},
		{
			name:  "replace keeps the comments and the fields that stay",
			in:    rules3,
			items: []Item{Keep(0), Replace(1, web), Keep(2)},
			want: strings.Replace(rules3, `  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct
`, `  - name: web
    ports: [80, 8000-8100]
    action: tunnel
    profile: office
    destinations: [10.2.0.0/16]
    # on_tunnel_down: direct
`, 1),
		},
		{
			name:  "replace a scalar with a mapping",
			in:    "rules:\n  # c\n  - a\n",
			items: []Item{Replace(0, web)},
			want:  "rules:\n  # c\n" + indented(webText, 2),
		},
		{
			name:  "delete every rule",
			in:    rules3,
			items: nil,
			want: strings.Replace(rules3, `rules:   # first match wins
  # refuse POP3
  - name: pop
    ports: [110]   # cleartext
    action: block

  # mail through the office
  - name: mail
    ports: [25]
    action: tunnel
    profile: office
    # on_tunnel_down: direct
  - name: rest
    action: direct
`, "rules: []   # first match wins\n", 1),
		},
		{
			name:  "indent 0",
			in:    "rules:\n- name: a\n  action: block\n# b's\n- name: b\n  action: direct\nlog: {level: info}\n",
			items: []Item{Keep(1), New(web), Keep(0)},
			want:  "rules:\n# b's\n- name: b\n  action: direct\n" + webText + "- name: a\n  action: block\nlog: {level: info}\n",
		},
		{
			name:  "key absent",
			in:    "log:\n  level: info\n",
			items: []Item{New(web)},
			want:  "log:\n  level: info\nrules:\n" + indented(webText, 2),
		},
		{
			name:  "key absent, no trailing newline",
			in:    "log:\n  level: info",
			items: []Item{New(web)},
			want:  "log:\n  level: info\nrules:\n" + indented(webText, 2),
		},
		{
			name:  "empty file",
			in:    "",
			items: []Item{New("a")},
			want:  "rules:\n  - a\n",
		},
		{
			name:  "only comments",
			in:    "# nothing yet\n",
			items: nil,
			want:  "# nothing yet\nrules: []\n",
		},
		{
			name:  "empty flow",
			in:    "rules: []  # none yet\nlog:\n  level: info\n",
			items: []Item{New(web)},
			want:  "rules:  # none yet\n" + indented(webText, 2) + "log:\n  level: info\n",
		},
		{
			name:  "flow sequence becomes block",
			in:    "rules: [{name: a, action: block}, {name: b, action: direct}]\nlog: {}\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - {name: b, action: direct}\n  - {name: a, action: block}\nlog: {}\n",
		},
		{
			name:  "multi-line flow sequence on its own line",
			in:    "rules:\n  [a, # first\n   b]\nx: 1\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - b\n  - a # first\nx: 1\n",
		},
		{
			name:  "a comment right after a comma",
			in:    "rules: [0,\n \"]\",#0]0\n]\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - \"]\" #0]0\n  - 0\n",
		},
		{
			name:  "null value",
			in:    "rules:\nx: 1\n",
			items: []Item{New("a")},
			want:  "rules:\n  - a\nx: 1\n",
		},
		{
			name:  "tilde value",
			in:    "rules: ~ # later\nx: 1\n",
			items: []Item{New("a")},
			want:  "rules: # later\n  - a\nx: 1\n",
		},
		{
			name:  "tilde to empty",
			in:    "rules: ~\n",
			items: nil,
			want:  "rules: []\n",
		},
		{
			name:  "CRLF kept",
			in:    "# c\r\nrules:\r\n  - a # x\r\n  - b\r\nlog: {}\r\n",
			items: []Item{Keep(1), New(map[string]any{"k": 1, "l": []int{1, 2}}), Keep(0)},
			want:  "# c\r\nrules:\r\n  - b\r\n  - k: 1\r\n    l: [1, 2]\r\n  - a # x\r\nlog: {}\r\n",
		},
		{
			name:  "no trailing newline, last item moves",
			in:    "rules:\n  - a\n  - b",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - b\n  - a",
		},
		{
			name:  "no trailing newline, item appended",
			in:    "rules:\n  - a",
			items: []Item{Keep(0), New("b")},
			want:  "rules:\n  - a\n  - b",
		},
		{
			name:  "a comment between gaps survives a delete",
			in:    "rules:\n  - a\n\n# old rules:\n\n  - b\n  - c\n",
			items: []Item{Keep(2)},
			want:  "rules:\n  - c\n\n# old rules:\n\n",
		},
		{
			name:  "block scalar item",
			in:    "rules:\n  - |\n    line 1\n\n    line 3\n  - b\n",
			items: []Item{Keep(1), Keep(0), New("x\ny\n")},
			want:  "rules:\n  - b\n  - |\n    line 1\n\n    line 3\n  - |\n      x\n      y\n",
		},
		{
			name:  "nested sequence item",
			in:    "rules:\n  - - a\n    - b\n  - c\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - c\n  - - a\n    - b\n",
		},
		{
			name:  "new item with comments from a node",
			in:    "rules:\n  - a\n",
			items: []Item{Keep(0), New(node(t, "# added by hand\nname: x # here\nports: [1]\n"))},
			want:  "rules:\n  - a\n  # added by hand\n  - name: x # here\n    ports: [1]\n",
		},
		{
			name:  "alias from elsewhere into an item kept",
			in:    "base: &b {action: block}\nrules:\n  - <<: *b\n    name: a\n  - name: c\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "base: &b {action: block}\nrules:\n  - name: c\n  - <<: *b\n    name: a\n",
		},
		{
			name:  "indented top level",
			in:    "  x: 1\n  rules:\n    - a\n",
			items: []Item{New("b"), Keep(0)},
			want:  "  x: 1\n  rules:\n    - b\n    - a\n",
		},
		{
			name:  "indented top level, key absent",
			in:    "  x: 1\n",
			items: []Item{New("b")},
			want:  "  x: 1\n  rules:\n    - b\n",
		},
		{
			name:  "anchor on the sequence",
			in:    "rules: &r\n  - a\n  - b\n",
			items: []Item{New("x"), Keep(1)},
			want:  "rules: &r\n  - x\n  - b\n",
		},
		{
			name:  "tag on a flow sequence",
			in:    "rules: !!seq [a, b]\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules: !!seq\n  - b\n  - a\n",
		},
		{
			name:  "quoted key",
			in:    "\"rules\": [a]\n",
			items: []Item{Keep(0), New("b")},
			want:  "\"rules\":\n  - a\n  - b\n",
		},
		{
			name:  "flow item the library writes back wrong",
			in:    "rules: [0, {0 0}]\n",
			items: []Item{Keep(1), Keep(0)},
			want:  "rules:\n  - 0 0: null\n  - 0\n",
		},
		{
			name:  "byte order mark",
			in:    "\ufeffrules: [a]\n",
			items: []Item{New("b"), Keep(0)},
			want:  "\ufeffrules:\n  - b\n  - a\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse("f.yaml", []byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.SetSequence("rules", tc.items); err != nil {
				t.Fatal(err)
			}
			if got := string(d.Bytes()); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s\n(%q)", got, tc.want, got)
			}
		})
	}
}

func node(t *testing.T, text string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(text), &n); err != nil {
		t.Fatal(err)
	}
	return n.Content[0]
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		items    []Item
		parseErr string
		editErr  string
	}{
		{name: "two documents", in: "rules: []\n---\nx: 1\n", parseErr: "f.yaml:2: a second YAML document"},
		{name: "syntax", in: "rules:\n  - a\n - b\n", parseErr: "f.yaml:2:"},
		{name: "duplicate key", in: "x: 1\nx: 2\n", parseErr: "f.yaml:2:"},
		{name: "not a mapping", in: "- a\n", parseErr: "f.yaml:1: the file's top level is not settings"},
		{name: "flow mapping", in: "{rules: [a]}\n", parseErr: "f.yaml:1: the file's settings are written as one flow mapping"},
		{name: "bare CR", in: "x: 1\ry: 2\n", parseErr: "f.yaml:1: this line ends with a bare CR"},
		{name: "line separator", in: "x: 1\ny: \"a\u2028b\"\n", parseErr: "f.yaml:2: this line holds a Unicode line"},
		{
			name: "alias into the rules", in: "rules:\n  - &a {name: a}\nother: *a\n", items: []Item{Keep(0)},
			editErr: "f.yaml:3: this alias (*a) refers to the anchor &a inside rules (line 2)",
		},
		{
			name: "alias inside the rules", in: "rules:\n  - &a {name: a}\n  - *a\n", items: []Item{Keep(1), Keep(0)},
			editErr: "f.yaml:3: this alias (*a) refers",
		},
		{name: "not a list", in: "rules: {a: 1}\n", items: nil, editErr: "f.yaml:1: rules is not a list"},
		{name: "no such item", in: "rules: [a]\n", items: []Item{Keep(1)}, editErr: "f.yaml: item 0 of rules: the file has no item 1 (it has 1)"},
		{name: "zero item", in: "rules: [a]\n", items: []Item{{}}, editErr: "item 0 of rules is empty"},
		{
			name: "a keep block scalar would change", in: "rules:\n  - |+\n    a\n\n  - b\n", items: []Item{Keep(1), Keep(0)},
			editErr: "f.yaml: cannot edit rules in place",
		},
		{name: "document end", in: "x: 1\n...\n", items: []Item{New("a")}, editErr: "cannot edit rules in place"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse("f.yaml", []byte(tc.in))
			if tc.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
					t.Fatalf("Parse: got %v, want %q", err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			err = d.SetSequence("rules", tc.items)
			if err == nil || !strings.Contains(err.Error(), tc.editErr) {
				t.Fatalf("SetSequence: got %v, want %q", err, tc.editErr)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v is a %T, not an *Error", err, err)
			}
			if string(d.Bytes()) != tc.in {
				t.Errorf("a refused edit changed the file to %q", d.Bytes())
			}
		})
	}
}

const profiles = `profiles:
  # the office
  - name: office
    host: gw.example   # main
  - name: lab
    host: lab.example
rules: []
`

func TestMapItem(t *testing.T) {
	type profile struct {
		Name string `yaml:"name"`
		Host string `yaml:"host"`
		Port int    `yaml:"port,omitempty"`
	}
	d, err := Parse("f.yaml", []byte(profiles))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		do   func() error
		want string
	}{
		{
			func() error {
				return d.SetMapItem("profiles", "name", "office", profile{Name: "office", Host: "gw2.example", Port: 2222})
			},
			"profiles:\n  # the office\n  - name: office\n    host: gw2.example  # main\n    port: 2222\n  - name: lab\n    host: lab.example\nrules: []\n",
		},
		{
			func() error { return d.SetMapItem("profiles", "name", "home", profile{Name: "home", Host: "h"}) },
			"profiles:\n  # the office\n  - name: office\n    host: gw2.example  # main\n    port: 2222\n  - name: lab\n    host: lab.example\n  - name: home\n    host: h\nrules: []\n",
		},
		{
			func() error { return d.DeleteMapItem("profiles", "name", "office") },
			"profiles:\n  - name: lab\n    host: lab.example\n  - name: home\n    host: h\nrules: []\n",
		},
		{
			func() error { return d.SetMapItem("proxies", "name", "p", profile{Name: "p", Host: "x"}) },
			"profiles:\n  - name: lab\n    host: lab.example\n  - name: home\n    host: h\nrules: []\nproxies:\n  - name: p\n    host: x\n",
		},
	}
	for i, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := string(d.Bytes()); got != s.want {
			t.Fatalf("step %d: got\n%s\nwant\n%s", i, got, s.want)
		}
	}
	if err := d.DeleteMapItem("profiles", "name", "nope"); !errors.Is(err, ErrNoItem) {
		t.Errorf("deleting a missing item: %v, want ErrNoItem", err)
	}
	d, _ = Parse("f.yaml", []byte("profiles:\n  - name: a\n  - name: a\n"))
	if err := d.SetMapItem("profiles", "name", "a", profile{Name: "a"}); err == nil || !strings.Contains(err.Error(), "f.yaml:3: a second item of profiles has name: a (the first is at line 2)") {
		t.Errorf("two items of one name: %v", err)
	}
}

// TestReplaceFields: replacing a mapping item keeps what the new value
// keeps, as it was written.
func TestReplaceFields(t *testing.T) {
	const in = "profiles:\r\n" +
		"  - name: office                  # rules refer to profiles by name\r\n" +
		"    host: gateway.example.com     # the SSH server\r\n" +
		"    # the port of sshd\r\n" +
		"    port: 22\r\n" +
		"\r\n" +
		"    user: alice                   # default: your local user name\r\n" +
		"    identity_files: [~/.ssh/id_ed25519]   # plus ssh-agent\r\n" +
		"    # connections: 2\r\n" +
		"  - name: lab\r\n"
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{
			name: "one field changed",
			v: map[string]any{"name": "office", "host": "gateway.example.com", "port": 2222, "user": "alice",
				"identity_files": []string{"~/.ssh/id_ed25519"}},
			want: strings.Replace(in, "    port: 22\r\n", "    port: 2222\r\n", 1),
		},
		{
			name: "a long value pushes its comment",
			v: map[string]any{"name": "office", "host": "a-much-longer-gateway-name.example.com", "port": 22, "user": "alice",
				"identity_files": []string{"~/.ssh/id_ed25519"}},
			want: strings.Replace(in, "    host: gateway.example.com     # the SSH server", "    host: a-much-longer-gateway-name.example.com # the SSH server", 1),
		},
		{
			name: "a field removed, one added",
			v:    node(t, "name: office\nhost: gateway.example.com\nport: 22\nidentity_files: [~/.ssh/id_ed25519]\nconnections: 2\n"),
			want: strings.Replace(strings.Replace(in, "    user: alice                   # default: your local user name\r\n", "", 1),
				"    # connections: 2\r\n", "    connections: 2\r\n    # connections: 2\r\n", 1),
		},
		{
			name: "the first field removed",
			v:    map[string]any{"host": "gateway.example.com", "port": 22, "user": "alice", "identity_files": []string{"~/.ssh/id_ed25519"}},
			want: strings.Replace(in, "  - name: office                  # rules refer to profiles by name\r\n    host:", "  - host:", 1),
		},
		{
			name: "a list changed",
			v:    map[string]any{"name": "office", "host": "gateway.example.com", "port": 22, "user": "alice", "identity_files": []string{"/k1", "/k2"}},
			want: strings.Replace(in, "[~/.ssh/id_ed25519]   #", "[/k1, /k2]            #", 1),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse("f.yaml", []byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.SetSequence("profiles", []Item{Replace(0, tc.v), Keep(1)}); err != nil {
				t.Fatal(err)
			}
			if got := string(d.Bytes()); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s\n(%q)", got, tc.want, got)
			}
		})
	}
}
