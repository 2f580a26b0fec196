package config

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// Syntax errors name the line where the problem is (go.yaml.in/yaml/v3
// names the line where the enclosing block began, or none) and say what to
// write.
func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"key indented between levels", "profiles:\n  - name: p\n    host: gw\n   port: 22\n",
			4, "this line is indented 3 spaces, which matches no block above: indent it 4 spaces, like host on line 3, or 2 spaces, like the '-' on line 2"},
		{"key indented too deep", "profiles:\n  - name: p\n    host: gw\n     port: 22\n",
			4, "this line is indented 5 spaces, more than host on line 3, whose value is already given: YAML reads the line as more of that value. Indent it 4 spaces, like host on line 3, to add a key there"},
		{"key at the level of the list's dashes", "rules:\n  - action: block\n  ports: [25]\n",
			3, "this line is indented like the items of the list (the '-' on line 2), but is not an item: indent it 4 spaces, like action on line 2, to add it to the item above, or start a new item with '- '"},
		{"key of the second item at the dashes' level", "profiles:\n  - name: p\n    host: gw\n  port: 22\n",
			4, "indent it 4 spaces, like host on line 3, to add it to the item above"},
		{"item between levels", "rules:\n  - action: block\n - action: direct\n",
			3, "this line is indented 1 space, which matches no block above: indent it 2 spaces, like the '-' on line 2, or 0 spaces, like rules on line 1"},
		{"item where a key is expected", "rules:\n- action: block\n  - action: direct\n",
			3, "this line starts a list item ('- ') where a key is expected: to add an item to that list, indent its '-' 0 spaces, like the '-' on line 2"},
		{"item of a nested list", "tun:\n  name: x\nrules:\n  - action: block\n    destinations:\n    - 10.0.0.1\n   - 10.0.0.2\n",
			7, "indent it 4 spaces, like the '-' on line 6, or 2 spaces, like the '-' on line 4"},
		{"mapping key out of line", "tun:\n  name: x\n mtu: 9000\n",
			3, "indented 1 space, which matches no block above: indent it 2 spaces, like name on line 2, or 0 spaces, like tun on line 1"},
		{"continuation of a top-level value", "key: value\n  more: x\n",
			2, "more than key on line 1, whose value is already given"},
		{"key after a top-level list", "- a\nb: c\n",
			2, "this line is indented like the items of the list (the '-' on line 1), but is not an item"},
		{"CRLF line ends", "log:\r\n  level: info\r\n level: x\r\n",
			3, "indented 1 space, which matches no block above"},
		{"tab indenting a key", "profiles:\n  - name: p\n\thost: gw\n",
			3, "this line is indented with a tab: YAML allows only spaces in indentation; replace the tab with spaces"},
		{"tab indenting an item", "profiles:\n\t- name: p\n",
			2, "indented with a tab: YAML allows only spaces"},
		{"tab after spaces", "log:\n  \tlevel: info\n",
			2, "indented with a tab: YAML allows only spaces"},
		{"tab on an empty line", "profiles:\n  - name: p\n    host: gw\nrules:\n  - action: block\n\t\n",
			6, "this empty line holds a tab: YAML does not allow tabs in indentation, not even on an empty line; remove it"},
		{"unclosed list", "profiles:\n  - name: p\n    host: [gw\nrules:\n  - action: block\n",
			3, "the [ opened on this line is never closed: end the list with ]"},
		{"unclosed list before an item", "rules:\n  - action: block\n    ports: [25, 110\n  - action: direct\n",
			3, "the [ opened on this line is never closed"},
		{"unclosed flow mapping", "log: {level: debug\n",
			1, "the { opened on this line is never closed: end the mapping with }"},
		{"closing bracket too many", "rules:\n  - action: block\n    ports: [25]]\n",
			3, "a ] that closes nothing: remove it"},
		{"unclosed double quote", "profiles:\n  - name: \"p\n    host: gw\n",
			2, `the quoted value opened on this line is never closed: end it with "`},
		{"unclosed single quote", "log:\n  level: 'debug\n",
			2, "the quoted value opened on this line is never closed: end it with '"},
		{"second colon in a value", "a: b: c\n",
			1, `a second ': ' on this line: YAML reads it as another key; quote the value (key: "a: b")`},
		{"no colon", "profiles:\n  - name: p\n    host gw\n    port: 22\n",
			3, "this line is not key: value (no ': '); write key: value"},
		{"list on the key's line", "rules: -\n",
			1, "a list cannot start on the line of its key: put each - item on a line of its own below the key, indented"},
		{"at sign", "profiles:\n  - name: p\n    host: gw # comment\n    user: @alice\n",
			4, `a value cannot begin with @ in YAML: quote it ("@alice")`},
		{"backquote", "profiles:\n  - name: p\n    host: `gw`\n",
			3, "a value cannot begin with ` in YAML: quote it"},
		{"percent", "log:\n  level: %debug\n",
			2, `a value cannot begin with % in YAML: quote it ("%debug")`},
		{"bad escape", "log:\n  level: \"a\\qb\"\n",
			2, `found unknown escape character: in double quotes a backslash starts an escape`},
		{"unknown anchor", "log: &a\n  level: *c\n",
			2, "unknown anchor 'c' referenced: a value starting with * refers to an anchor (&name); quote the value"},
		{"not UTF-8", "log:\n  level: \xff\n",
			2, "the file must be UTF-8 text"},
		{"second document", "profiles:\n  - name: p\n    host: gw\n---\nrules: []\n",
			4, "a second YAML document starts here (---): shunt reads one document a file"},
		{"broken second document", "log:\n  level: info\n---\nrules: [\n",
			4, "the [ opened on this line is never closed"},
		{"error after a valid multi-line list", "log:\n  level: [a,\n    b]\nx: y: z\n",
			4, "a second ': ' on this line"},
		{"dash without a space", "rules:\n  -action: block\n",
			2, "expected a list of rules, found a mapping (key: value lines): start each item with '- ' (a dash and a space)"},
		{"not a mapping", "hello\n",
			1, "expected the top-level keys (profiles:, rules:, …), found the text `hello`"},
		{"a list at the top", "- a\n- b\n",
			1, "expected the top-level keys (profiles:, rules:, …), found a list"},
		{"number expected", "tun:\n  mtu: big\n",
			2, "expected a number, found the text `big`"},
		{"key twice", "log:\n  level: debug\n  level: info\n",
			3, `key "level" is given twice (first at line 2): keep one`},
		{"empty", "", 1, "the file holds no settings"},
		{"blank lines only", "\n\n  \n", 1, "the file holds no settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newTestEnv(t).parse("x.yaml", tt.yaml)
			if err == nil {
				t.Fatal("no error")
			}
			var first *Error
			if !errors.As(err, &first) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			want := "x.yaml:" + strconv.Itoa(tt.line) + ": "
			if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant %s...%s", err, want, tt.want)
			}
		})
	}
}
