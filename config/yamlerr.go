package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// scanBudget bounds the search for a syntax error's line, which parses
// the file's prefixes: at most this many bytes in all (a few hundred
// times a configuration of a few hundred lines). Past it, the YAML
// library's line stands.
const scanBudget = 16 << 20

// decodeYAML parses the file's one document.
func decodeYAML(path string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: path, Line: 1, Msg: "the file holds no settings (it is empty, or only comments): it needs at least profiles and rules"}
		}
		return nil, syntaxError(path, data, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
		return &root, nil
	case err != nil:
		return nil, syntaxError(path, data, err)
	}
	line := next.Line
	lines := splitLines(data)
	for i := root.Line; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "---") {
			line = i + 1
			break
		}
	}
	return nil, &Error{File: path, Line: max(line, 1), Msg: "a second YAML document starts here (---): shunt reads one document a file; remove the --- and merge the settings, or put them in another file (--config)"}
}

// lineBreak is what YAML counts as a line break: LF, CRLF, CR, NEL, LS and
// PS.
var lineBreak = regexp.MustCompile("\r\n|[\r\n\u0085\u2028\u2029]")

// splitLines splits the file into lines as YAML counts them.
func splitLines(data []byte) []string {
	return lineBreak.Split(string(data), -1)
}

// parses reports whether text is valid YAML, every document of it.
func parses(text string) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(strings.NewReader(text))
	var first *yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return first, true
		}
		if err != nil {
			return nil, false
		}
		if first == nil {
			first = &n
		}
	}
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxError explains a YAML syntax error at the line where the problem
// is, saying what to write. go.yaml.in/yaml/v3 often names the line where
// the enclosing block began (":1: did not find expected '-' indicator" for
// a mis-indented line 4), or no line at all, so the line is found again:
// the first line after the longest prefix of the file that parses. The
// prefix's own structure then tells which indentations would be right.
func syntaxError(path string, data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := splitLines(data)
	var prefix *yaml.Node
	budget := scanBudget
	for k := len(lines) - 1; k >= 0 && budget > 0; k-- {
		text := strings.Join(lines[:k], "\n")
		budget -= len(text)
		if n, ok := parses(text); ok {
			line, prefix = k+1, n
			break
		}
	}
	line = min(max(line, 1), len(lines))
	return &Error{File: path, Line: line, Msg: explainSyntax(msg, lines, line, prefix)}
}

// explainSyntax says what is wrong with line n (from 1), and what to
// write; prefix is the parse of the lines before it (nil if empty).
func explainSyntax(msg string, lines []string, n int, prefix *yaml.Node) string {
	text := lines[n-1]
	body := strings.TrimLeft(text, " ")
	indent := len(text) - len(body)
	switch {
	case strings.HasPrefix(body, "\t") || (strings.Contains(msg, "tab") && strings.Contains(text, "\t")):
		if strings.TrimSpace(text) == "" {
			return "this empty line holds a tab: YAML does not allow tabs in indentation, not even on an empty line; remove it"
		}
		return "this line is indented with a tab: YAML allows only spaces in indentation; replace the tab with spaces, lined up with the lines it belongs with"
	}
	if s := explainIndent(lines, n, indent, body, prefix); s != "" {
		return s
	}
	if s := explainToken(msg, body); s != "" {
		return s
	}
	switch {
	case strings.Contains(msg, "could not find expected ':'"):
		return "this line is not key: value (no ': '); write key: value, or - item in a list"
	case strings.Contains(msg, "unknown escape character"):
		return msg + `: in double quotes a backslash starts an escape (\n, \t, \\); write \\ for a backslash, or use single quotes`
	case strings.Contains(msg, "unknown anchor"):
		return msg + ": a value starting with * refers to an anchor (&name); quote the value if the * is meant as text"
	case strings.Contains(msg, "block sequence entries are not allowed"):
		return "a list cannot start on the line of its key: put each - item on a line of its own below the key, indented"
	case strings.Contains(msg, "mapping values are not allowed"):
		return "a second ': ' on this line: YAML reads it as another key; quote the value (key: \"a: b\")"
	case strings.Contains(msg, "UTF-8") || strings.Contains(msg, "control characters"):
		return msg + ": the file must be UTF-8 text; save it as UTF-8, without control characters"
	case strings.Contains(msg, "did not find expected"):
		return msg + ": check this line's indentation and brackets against the lines above"
	}
	return msg
}

// level is a block open at the end of the prefix: a mapping or a sequence,
// the column (from 0) of its keys or dashes, and the line of its last key
// or item.
type level struct {
	col  int
	kind yaml.Kind
	last int
	key  string // the last key of a mapping
}

// like names the level's last key or dash, to line up with.
func (l *level) like() string {
	if l.kind == yaml.SequenceNode {
		return fmt.Sprintf("the '-' on line %d", l.last)
	}
	return fmt.Sprintf("%s on line %d", l.key, l.last)
}

// openLevels are the prefix's blocks still open at its end, outermost
// first, and the value the prefix ends with.
func openLevels(prefix *yaml.Node) ([]level, *yaml.Node) {
	if prefix == nil || len(prefix.Content) == 0 {
		return nil, nil
	}
	var out []level
	n := prefix.Content[0]
	for {
		if n.Style&yaml.FlowStyle != 0 || len(n.Content) == 0 {
			return out, n
		}
		switch n.Kind {
		case yaml.MappingNode:
			k := n.Content[len(n.Content)-2]
			out = append(out, level{col: n.Column - 1, kind: yaml.MappingNode, last: k.Line, key: k.Value})
			n = n.Content[len(n.Content)-1]
		case yaml.SequenceNode:
			it := n.Content[len(n.Content)-1]
			out = append(out, level{col: n.Column - 1, kind: yaml.SequenceNode, last: it.Line})
			n = it
		default:
			return out, n
		}
	}
}

// explainIndent finds an indentation that fits no block above, or ""
// when the indentation is not the problem.
func explainIndent(lines []string, n, indent int, body string, prefix *yaml.Node) string {
	levels, last := openLevels(prefix)
	if len(levels) == 0 || strings.HasPrefix(body, "#") {
		return ""
	}
	item := body == "-" || strings.HasPrefix(body, "- ")
	at := func(kind yaml.Kind) *level {
		for i := range levels {
			if levels[i].col == indent && levels[i].kind == kind {
				return &levels[i]
			}
		}
		return nil
	}
	spaces := func(c int) string {
		if c == 1 {
			return "1 space"
		}
		return fmt.Sprintf("%d spaces", c)
	}
	deepest := levels[len(levels)-1]
	// A value left empty ("key:") opens a block: anything deeper fits.
	opens := last != nil && last.Kind == yaml.ScalarNode && last.Value == "" && last.Tag == "!!null" && last.Style == 0
	switch {
	case indent > deepest.col:
		if opens || last == nil || last.Kind != yaml.ScalarNode {
			return ""
		}
		return fmt.Sprintf("this line is indented %s, more than %s, whose value is already given: YAML reads the line as more of that value. "+
			"Indent it %s, like %s, to add a key there", spaces(indent), deepest.like(), spaces(deepest.col), deepest.like())
	case item && at(yaml.SequenceNode) != nil, !item && at(yaml.MappingNode) != nil:
		return "" // the indentation fits
	case !item && at(yaml.SequenceNode) != nil:
		seq := at(yaml.SequenceNode)
		for i := range levels {
			if levels[i].col > seq.col && levels[i].kind == yaml.MappingNode {
				return fmt.Sprintf("this line is indented like the items of the list (%s), but is not an item: indent it %s, like %s, to add it to the item above, or start a new item with '- '",
					seq.like(), spaces(levels[i].col), levels[i].like())
			}
		}
		return fmt.Sprintf("this line is indented like the items of the list (%s), but is not an item: start it with '- ', or indent it to belong under a key", seq.like())
	case item && at(yaml.MappingNode) != nil:
		for i := len(levels) - 1; i >= 0; i-- {
			if levels[i].kind == yaml.SequenceNode && levels[i].col < indent {
				return fmt.Sprintf("this line starts a list item ('- ') where a key is expected: to add an item to that list, indent its '-' %s, like %s",
					spaces(levels[i].col), levels[i].like())
			}
		}
		return "this line starts a list item ('- ') where a key is expected: a list goes under its key (key: on the line above, the items indented below it)"
	}
	// Between levels: name the nearest one each side.
	// Of a list and a mapping at one column, the kind of this line.
	want := yaml.MappingNode
	if item {
		want = yaml.SequenceNode
	}
	var lo, hi *level
	for i := range levels {
		l := &levels[i]
		if l.col < indent && (lo == nil || l.col > lo.col || l.col == lo.col && l.kind == want) {
			lo = l
		}
		if l.col > indent && (hi == nil || l.col < hi.col || l.col == hi.col && l.kind == want) {
			hi = l
		}
	}
	what := "this line is indented " + spaces(indent) + ", which matches no block above: indent it "
	switch {
	case lo != nil && hi != nil:
		return what + fmt.Sprintf("%s, like %s, or %s, like %s", spaces(hi.col), hi.like(), spaces(lo.col), lo.like())
	case hi != nil:
		return what + fmt.Sprintf("%s, like %s", spaces(hi.col), hi.like())
	case lo != nil:
		return what + fmt.Sprintf("%s, like %s", spaces(lo.col), lo.like())
	}
	return ""
}

// explainToken finds an unclosed quote or bracket, or a character that
// cannot start a value, in the line.
func explainToken(msg, body string) string {
	var open []byte      // the brackets open
	var quote, prev byte // prev: the last character outside quotes, but spaces
	space := false       // a space since prev
	for i := 0; i < len(body); i++ {
		ch := body[i]
		if quote != 0 {
			switch {
			case quote == '"' && ch == '\\':
				i++
			case quote == '\'' && ch == '\'' && i+1 < len(body) && body[i+1] == '\'':
				i++
			case ch == quote:
				quote = 0
			}
			continue
		}
		if ch == ' ' {
			space = true
			continue
		}
		if ch == '#' && (i == 0 || space) {
			break
		}
		// Where a value may begin: the line's start, after "[", "{", ","
		// or after ": " and "- ".
		start := prev == 0 || prev == '[' || prev == '{' || prev == ',' || ((prev == ':' || prev == '-') && space)
		switch {
		case start && (ch == '"' || ch == '\''):
			quote = ch
		case (start || len(open) > 0) && (ch == '[' || ch == '{'):
			open = append(open, ch)
		case (ch == ']' || ch == '}') && (len(open) > 0 || start || prev == ']' || prev == '}'):
			if len(open) == 0 {
				return fmt.Sprintf("a %c that closes nothing: remove it, or open the list with [ (or the mapping with {)", ch)
			}
			open = open[:len(open)-1]
		case start && (ch == '@' || ch == '`' || ch == '%'):
			v := strings.TrimSpace(strings.SplitN(body[i:], " #", 2)[0])
			return fmt.Sprintf("a value cannot begin with %c in YAML: quote it (%q)", ch, v)
		}
		prev, space = ch, false
	}
	switch {
	case quote != 0 && (strings.Contains(msg, "end of stream") || strings.Contains(msg, "did not find expected")):
		return fmt.Sprintf("the quoted value opened on this line is never closed: end it with %c", quote)
	case len(open) > 0 && strings.Contains(msg, "did not find expected"):
		if open[0] == '{' {
			return "the { opened on this line is never closed: end the mapping with } on this line, or write it as indented key: value lines"
		}
		return "the [ opened on this line is never closed: end the list with ] on this line, or write it as indented - item lines"
	}
	return ""
}

// typeErrors turns the YAML library's "line N: cannot unmarshal …" into
// ours, in words rather than Go types.
func typeErrors(path string, err error) error {
	var lines []string
	if te, ok := errors.AsType[*yaml.TypeError](err); ok {
		lines = te.Errors
	} else {
		lines = []string{err.Error()}
	}
	var errs []error
	for _, l := range lines {
		e := &Error{File: path, Line: 1, Msg: strings.TrimPrefix(strings.TrimSpace(l), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		e.Msg = explainType(e.Msg)
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

var (
	unmarshalMsg = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (.+)$")
	dupKeyMsg    = regexp.MustCompile(`^mapping key "(.*)" already defined at line (\d+)$`)
)

func explainType(msg string) string {
	if m := dupKeyMsg.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("key %q is given twice (first at line %s): keep one", m[1], m[2])
	}
	m := unmarshalMsg.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	found := map[string]string{
		"str": "the text `" + m[2] + "`", "int": "the number " + m[2], "float": "the number " + m[2],
		"bool": "`" + m[2] + "`", "map": "a mapping (key: value lines)", "seq": "a list", "null": "nothing",
		"binary": "binary data", "timestamp": "the time " + m[2],
	}[m[1]]
	if found == "" {
		found = "a " + m[1]
	}
	want := goTypeWords(m[3])
	s := fmt.Sprintf("expected %s, found %s", want, found)
	if m[1] == "map" && strings.HasPrefix(want, "a list") {
		s += ": start each item with '- ' (a dash and a space)"
	}
	return s
}

// goTypeWords says what a configuration type takes.
func goTypeWords(t string) string {
	switch t {
	case "int", "int64", "uint16", "uint32":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a single value"
	case "[]string", "config.StringList":
		return "a list of values"
	case "config.Config":
		return "the top-level keys (profiles:, rules:, …)"
	case "[]config.Profile":
		return "a list of profiles"
	case "[]config.Rule":
		return "a list of rules"
	case "[]config.ProxyRule":
		return "a list of proxy rules"
	case "config.Profile":
		return "a profile (key: value lines: name, host, …)"
	case "config.Rule":
		return "a rule (key: value lines: action, destinations, …)"
	case "config.ProxyRule":
		return "a proxy rule (key: value lines: destinations, proxy)"
	case "config.TUN", "config.Log":
		return "key: value lines"
	}
	if strings.HasPrefix(t, "[]") {
		return "a list"
	}
	return "a " + strings.TrimPrefix(t, "config.")
}
