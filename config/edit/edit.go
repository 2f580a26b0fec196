// Package edit changes shunt's YAML configuration files in place, for the
// web console: an edit rewrites only the bytes it must, so comments, key
// order, blank lines and every part it does not touch stay byte for byte.
//
// The YAML library finds the nodes; the byte spans they cover are found by
// scanning the source lines, and new text is spliced in. The document is
// never encoded again as a whole. Every edit is checked before it is kept:
// the new file must parse to the old data with only the edited value
// changed, to exactly the items asked for. An edit this package cannot make
// safely (anchors referred to from elsewhere, a flow-style top-level
// mapping, line breaks other than LF and CRLF) is refused with an error;
// it never writes a file that means something else.
package edit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/shunt-dev/shunt/config"
)

// Error is a file that cannot be edited, or an edit that cannot be made,
// at the file's line Line (0 when no line is to blame): the configuration's
// own error type, so callers handle both alike.
type Error = config.Error

// ErrNoItem is the error (errors.Is) of DeleteMapItem when no item has the
// name; the file is unchanged.
var ErrNoItem = errors.New("no such item")

// Doc is one YAML file being edited. Its methods change it in memory only;
// Bytes is the file's new content. A failed edit leaves the Doc as it was.
type Doc struct {
	path string
	data []byte
	// root is the document's top-level mapping (nil: the file holds no
	// data, only comments or nothing).
	root  *yaml.Node
	lines []span
	bom   bool
	// nl ends the lines this package writes: the file's first line
	// break.
	nl string
}

// span is one line: data[start:end] is its text, next the start of the
// following line (end plus its line break).
type span struct{ start, end, next int }

// Parse reads one YAML file for editing; path names it in errors. The file
// must hold one YAML document whose top level is a block mapping (or
// nothing yet), with LF or CRLF line breaks.
func Parse(path string, data []byte) (*Doc, error) {
	d := &Doc{path: path, data: bytes.Clone(data), nl: "\n"}
	if err := d.load(); err != nil {
		return nil, err
	}
	return d, nil
}

// Bytes is the file's content with the edits made so far.
func (d *Doc) Bytes() []byte { return bytes.Clone(d.data) }

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// load parses d.data into d's other fields.
func (d *Doc) load() error {
	d.bom = bytes.HasPrefix(d.data, []byte("\ufeff"))
	d.lines = d.lines[:0]
	for i, start := 0, 0; ; {
		j := bytes.IndexAny(d.data[i:], "\r\n")
		if j < 0 {
			d.lines = append(d.lines, span{start, len(d.data), len(d.data)})
			break
		}
		j += i
		if d.data[j] == '\r' && (j+1 >= len(d.data) || d.data[j+1] != '\n') {
			return d.errorAt(len(d.lines)+1, "this line ends with a bare CR (carriage return): the console edits files with LF or CRLF line ends only; save the file with those")
		}
		next := j + 1
		if d.data[j] == '\r' {
			next++
			if len(d.lines) == 0 {
				d.nl = "\r\n"
			}
		}
		d.lines = append(d.lines, span{start, j, next})
		i, start = next, next
	}
	for n, l := range d.lines {
		text := string(d.data[l.start:l.end])
		if strings.ContainsAny(text, "\u0085\u2028\u2029") {
			return d.errorAt(n+1, "this line holds a Unicode line or paragraph separator (NEL, LS or PS), which YAML counts as a line break: the console edits files with LF or CRLF line ends only; remove it or write it as an escape in double quotes (\\u2028)")
		}
	}

	dec := yaml.NewDecoder(bytes.NewReader(d.data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		d.root = nil
		return nil
	case err != nil:
		return d.yamlError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return d.yamlError(err)
	default:
		line := next.Line
		for i := doc.Line; i < len(d.lines); i++ {
			if bytes.HasPrefix(d.text(i), []byte("---")) {
				line = i + 1
				break
			}
		}
		return d.errorAt(max(line, 1), "a second YAML document starts here: the console edits files of one document only; put the settings in one document")
	}
	var data any
	if err := decode(&doc, &data); err != nil {
		return d.yamlError(err)
	}
	d.root = nil
	if len(doc.Content) == 0 {
		return nil
	}
	top := doc.Content[0]
	switch {
	case top.Kind == yaml.ScalarNode && top.Tag == "!!null":
		// Only comments, or "~": treated as empty when nothing is in it.
		if strings.TrimSpace(top.Value) != "" {
			return d.errorAt(top.Line, "the file holds the single value %q, not settings (key: value lines)", top.Value)
		}
		return nil
	case top.Kind != yaml.MappingNode:
		return d.errorAt(top.Line, "the file's top level is not settings (key: value lines); the console edits a mapping of settings only")
	case top.Style&yaml.FlowStyle != 0:
		return d.errorAt(top.Line, "the file's settings are written as one flow mapping ({...}): the console edits block style only (one key: value a line); rewrite it that way")
	}
	d.root = top
	return nil
}

// decode is n.Decode(v), with a panic of the YAML library (keys it cannot
// hash) turned into an error.
func decode(n *yaml.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML library cannot read this file: %v", r)
		}
	}()
	return n.Decode(v)
}

func (d *Doc) errorAt(line int, format string, args ...any) *Error {
	return &Error{File: d.path, Line: line, Msg: fmt.Sprintf(format, args...)}
}

// yamlError is the YAML library's error at its file line.
func (d *Doc) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else if te := (*yaml.TypeError)(nil); errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = m[2]
		}
	}
	return d.errorAt(min(max(line, 1), len(d.lines)), "%s", msg)
}

// Item is one item of a sequence that SetSequence writes: an item of the
// file kept as it is (Keep), new content (New), or new content in the
// place of an item, keeping that item's comment lines above it (Replace).
type Item struct {
	// keep is the index of the existing item plus one, 0 for none.
	keep  int
	value any
	isNew bool
}

// Keep is the file's item i (from 0, as the file was when parsed or last
// edited), with its exact text and the comment lines above it.
func Keep(i int) Item { return Item{keep: i + 1} }

// New is an item with value v, encoded with go.yaml.in/yaml/v3 at the
// sequence's indentation: any value yaml.Marshal takes (a map, a struct
// with yaml tags, a string), or a *yaml.Node for full control over styles
// and comments (yaml.Unmarshal pre-rendered YAML into one). Lists of
// scalars in a value that is not a *yaml.Node are written in flow style
// ([a, b]), as the example files do.
func New(v any) Item { return Item{value: v, isNew: true} }

// Replace is New(v) in the place of the file's item i: the comment lines
// above item i stay above it. When both are mappings (a rule, a profile),
// the fields whose values v keeps are kept as they were written, with
// their comments, in their order; a changed field is written anew (keeping
// the comment lines above it, and its line-end comment when it fits on its
// line); fields v lacks are removed; new fields follow the others, in v's
// order.
func Replace(i int, v any) Item { return Item{keep: i + 1, value: v, isNew: true} }

// seqLayout is where a top-level key's value sits in the file.
type seqLayout struct {
	key, val *yaml.Node
	// keyIdx is the key's index in the root mapping's Content, -1 when
	// the key is absent.
	keyIdx int
	// For a block sequence: col is the dashes' column (from 0); item i
	// covers the lines head[i]..last[i] (from 0), dash[i] being its "-".
	col              int
	head, dash, last []int
}

// layout finds key in the root mapping. The value must be a sequence (or
// null, or absent).
func (d *Doc) layout(key string) (*seqLayout, error) {
	l := &seqLayout{keyIdx: -1}
	if d.root == nil {
		return l, nil
	}
	for i := 0; i+1 < len(d.root.Content); i += 2 {
		k := d.root.Content[i]
		if k.Kind != yaml.ScalarNode || k.Value != key {
			continue
		}
		if l.keyIdx >= 0 {
			return nil, d.errorAt(k.Line, "%s is set twice (also at line %d): remove one", key, l.key.Line)
		}
		l.keyIdx, l.key, l.val = i, k, d.root.Content[i+1]
	}
	if l.keyIdx < 0 {
		return l, nil
	}
	v := l.val
	if v.Kind == yaml.AliasNode || v.Anchor != "" && v.Kind != yaml.SequenceNode {
		return nil, d.errorAt(v.Line, "%s is written with an anchor or alias (& or *): the console cannot edit it without changing what refers to it; write its items out", key)
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return l, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, d.errorAt(v.Line, "%s is not a list (- item lines): write it as a list", key)
	}
	if err := d.checkAnchors(key, v); err != nil {
		return nil, err
	}
	if v.Style&yaml.FlowStyle != 0 {
		return l, nil
	}
	return l, d.blockLayout(l)
}

// checkAnchors refuses a sequence holding an anchor that an alias refers
// to: moving, replacing or deleting items could leave the alias before
// its anchor, or without one.
func (d *Doc) checkAnchors(key string, seq *yaml.Node) error {
	inside := map[*yaml.Node]bool{}
	var mark func(n *yaml.Node)
	mark = func(n *yaml.Node) {
		if n.Anchor != "" {
			inside[n] = true
		}
		for _, c := range n.Content {
			mark(c)
		}
	}
	mark(seq)
	if len(inside) == 0 {
		return nil
	}
	var bad *yaml.Node
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if bad != nil {
			return
		}
		if n.Kind == yaml.AliasNode && inside[n.Alias] {
			bad = n
			return
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(d.root)
	if bad != nil {
		return d.errorAt(bad.Line, "this alias (*%s) refers to the anchor &%s inside %s (line %d): the console cannot edit %s without breaking it; write the value out in place of the alias", bad.Value, bad.Value, key, bad.Alias.Line, key)
	}
	return nil
}

func (d *Doc) text(line int) []byte {
	l := d.lines[line]
	return d.data[l.start:l.end]
}

// indent is the number of spaces a line starts with; blank whether it
// holds nothing else; comment whether a comment is its first token.
func (d *Doc) indent(line int) (indent int, blank, comment bool) {
	t := d.text(line)
	if line == 0 && d.bom {
		t = t[3:]
	}
	for indent < len(t) && t[indent] == ' ' {
		indent++
	}
	rest := bytes.TrimLeft(t[indent:], " \t")
	return indent, len(rest) == 0, len(rest) > 0 && rest[0] == '#'
}

// offset is the byte offset of a node's line and column (both from 1, the
// column in characters, as the YAML library counts them).
func (d *Doc) offset(line, col int) int {
	l := d.lines[line-1]
	o := l.start
	if line == 1 && d.bom {
		o += 3
	}
	for c := 1; c < col && o < l.end; c++ {
		_, n := utf8.DecodeRune(d.data[o:l.end])
		o += n
	}
	return o
}

// blockLayout finds the lines of each item of a block sequence.
func (d *Doc) blockLayout(l *seqLayout) error {
	items := l.val.Content
	keyLine := l.key.Line - 1
	// The dashes' column is the first item's: the sequence's own column
	// can be that of an anchor or tag on the key's line.
	l.col = -1
	for n := items[0].Line - 1; n > keyLine && l.col < 0; n-- {
		ind, _, _ := d.indent(n)
		if t := d.text(n); ind < len(t) && t[ind] == '-' {
			l.col = ind
		}
	}
	// The lines up to the next top-level key (or the file's end) are the
	// sequence's to take.
	bound := len(d.lines) - 1
	if l.keyIdx+2 < len(d.root.Content) {
		bound = d.root.Content[l.keyIdx+2].Line - 2
	}
	prev := keyLine
	for i, it := range items {
		dash := -1
		for n := min(it.Line-1, bound); n > prev; n-- {
			ind, _, _ := d.indent(n)
			t := d.text(n)
			if ind == l.col && ind < len(t) && t[ind] == '-' && (ind+1 == len(t) || t[ind+1] == ' ' || t[ind+1] == '\t') {
				dash = n
				break
			}
		}
		if dash < 0 {
			return d.errorAt(it.Line, "cannot find the \"-\" of this item of %s at column %d: the console cannot edit this list; line its - up with the others", l.key.Value, l.col+1)
		}
		head := dash
		for head-1 > prev {
			ind, _, comment := d.indent(head - 1)
			if !comment || ind > l.col {
				break
			}
			head--
		}
		l.dash = append(l.dash, dash)
		l.head = append(l.head, head)
		if i > 0 {
			l.last = append(l.last, d.lastLine(l, l.dash[i-1], head-1))
		}
		prev = dash
	}
	if n := len(items); n > 0 {
		l.last = append(l.last, d.lastLine(l, l.dash[n-1], bound))
	}
	return nil
}

// lastLine is the last line of an item whose "-" is on line dash, looking
// no further than line bound: the last line indented past the dash.
func (d *Doc) lastLine(l *seqLayout, dash, bound int) int {
	last := dash
	for n := dash + 1; n <= bound; n++ {
		if ind, blank, _ := d.indent(n); !blank && ind > l.col {
			last = n
		}
	}
	return last
}

// lineText is lines a..b (from 0) with their line breaks; a missing final
// line break is added.
func (d *Doc) lineText(a, b int) []byte {
	out := bytes.Clone(d.data[d.lines[a].start:d.lines[b].next])
	if d.lines[b].next == d.lines[b].end {
		out = append(out, d.nl...)
	}
	return out
}

// SetSequence makes the top-level key's value the sequence of items, in
// that order. Kept items keep their bytes and the comment lines above
// them; the blank lines and comments between items stay where they are.
// A key that is absent is added at the end of the file; a flow sequence
// ([a, b]) or an empty value becomes a block sequence, indented by two
// spaces; no items write key: [].
func (d *Doc) SetSequence(key string, items []Item) error {
	l, err := d.layout(key)
	if err != nil {
		return err
	}
	n := 0
	if l.val != nil && l.val.Kind == yaml.SequenceNode {
		n = len(l.val.Content)
	}
	want := make([]any, 0, len(items))
	texts := make([][]byte, 0, len(items))
	col := l.col
	if l.dash == nil {
		col = 2
		if d.root != nil {
			col += d.root.Column - 1
		}
	}
	for j, it := range items {
		if it.keep > n || it.keep < 0 {
			return &Error{File: d.path, Msg: fmt.Sprintf("item %d of %s: the file has no item %d (it has %d)", j, key, it.keep-1, n)}
		}
		if !it.isNew {
			if it.keep == 0 {
				return &Error{File: d.path, Msg: fmt.Sprintf("item %d of %s is empty: make it with Keep, New or Replace", j, key)}
			}
			var v any
			if err := decode(l.val.Content[it.keep-1], &v); err != nil {
				return d.yamlError(err)
			}
			want = append(want, v)
			if l.dash != nil {
				texts = append(texts, d.lineText(l.head[it.keep-1], l.last[it.keep-1]))
			} else {
				// A flow sequence's item is written anew: from its node,
				// which keeps its comments and styles, unless the YAML
				// library writes that back wrong.
				t, err := d.render(l.val.Content[it.keep-1], col)
				if err == nil && !readsAs(t, v) {
					t, err = d.render(v, col)
				}
				if err != nil {
					return &Error{File: d.path, Msg: fmt.Sprintf("item %d of %s: %v", j, key, err)}
				}
				texts = append(texts, t)
			}
			continue
		}
		t, err := d.render(it.value, col)
		if err != nil {
			return &Error{File: d.path, Msg: fmt.Sprintf("item %d of %s: %v", j, key, err)}
		}
		v, err := roundTrip(it.value)
		if err != nil {
			return &Error{File: d.path, Msg: fmt.Sprintf("item %d of %s: %v", j, key, err)}
		}
		want = append(want, v)
		if it.keep > 0 && l.dash != nil {
			if m := d.merge(l, it.keep-1, it.value); m != nil && readsAs(m, v) {
				t = m
			}
			if l.head[it.keep-1] < l.dash[it.keep-1] {
				t = append(d.lineText(l.head[it.keep-1], l.dash[it.keep-1]-1), t...)
			}
		}
		texts = append(texts, t)
	}

	var out []byte
	switch {
	case l.keyIdx < 0:
		out = d.appendKey(key, texts)
	case l.dash != nil:
		out = d.spliceBlock(l, texts)
	default:
		out, err = d.spliceValue(l, texts)
		if err != nil {
			return err
		}
	}
	return d.commit(key, out, want)
}

// appendKey adds key with its items at the end of the file.
func (d *Doc) appendKey(key string, texts [][]byte) []byte {
	out := bytes.Clone(d.data)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, d.nl...)
	}
	indent := ""
	if d.root != nil {
		indent = strings.Repeat(" ", d.root.Column-1)
	}
	out = append(out, indent+keyText(key)...)
	if len(texts) == 0 {
		return append(out, ": []"+d.nl...)
	}
	out = append(out, ":"+d.nl...)
	for _, t := range texts {
		out = append(out, t...)
	}
	return out
}

// keyText is key as a YAML key: plain when that reads back as the same
// string.
func keyText(key string) string {
	b, err := yaml.Marshal(key)
	if err != nil {
		return strconv.Quote(key)
	}
	return strings.TrimSuffix(string(b), "\n")
}

// spliceBlock writes texts in the place of a block sequence's items. Item
// i's text fills the place of the file's item i; the gaps between items
// (blank lines, comments of neither) stay between the same places. Gaps
// left over that hold comments follow the last item.
func (d *Doc) spliceBlock(l *seqLayout, texts [][]byte) []byte {
	n := len(l.dash)
	first, end := d.lines[l.head[0]].start, d.lines[l.last[n-1]].next
	var gaps [][]byte
	for i := 0; i+1 < n; i++ {
		gaps = append(gaps, d.data[d.lines[l.last[i]].next:d.lines[l.head[i+1]].start])
	}
	var mid []byte
	for j, t := range texts {
		if j > 0 {
			switch {
			case j-1 < len(gaps):
				mid = append(mid, gaps[j-1]...)
			case len(gaps) > 0 && len(bytes.TrimSpace(gaps[len(gaps)-1])) == 0:
				mid = append(mid, gaps[len(gaps)-1]...)
			}
		}
		mid = append(mid, t...)
	}
	for j := max(len(texts)-1, 0); j < len(gaps); j++ {
		if len(bytes.TrimSpace(gaps[j])) > 0 {
			mid = append(mid, gaps[j]...)
		}
	}
	out := bytes.Clone(d.data[:first])
	if len(texts) == 0 {
		out = d.markEmpty(l, out)
	}
	out = append(out, mid...)
	if end == len(d.data) && d.lines[l.last[n-1]].end == end {
		// The file ended without a line break; so does the new one.
		out = bytes.TrimRight(out, "\r\n")
	}
	return append(out, d.data[end:]...)
}

// markEmpty is out (the file up to the first item's line) with " []"
// written after the key's colon.
func (d *Doc) markEmpty(l *seqLayout, out []byte) []byte {
	k := d.lines[l.key.Line-1]
	at := d.offset(l.key.Line, l.key.Column)
	c := bytes.IndexByte(d.data[at:k.end], ':')
	if c < 0 {
		return out // the check after the edit refuses it
	}
	at += c + 1
	res := bytes.Clone(out[:at])
	res = append(res, " []"...)
	return append(res, out[at:]...)
}

// spliceValue writes texts as a block sequence in the place of a flow
// sequence or a null value.
func (d *Doc) spliceValue(l *seqLayout, texts [][]byte) ([]byte, error) {
	v := l.val
	vs, ve := -1, -1
	switch {
	case v.Kind == yaml.SequenceNode:
		vs = d.offset(v.Line, v.Column)
		// An anchor or a tag before the [ stays.
		for vs < len(d.data) && (d.data[vs] == '&' || d.data[vs] == '!') {
			for vs < len(d.data) && !isSpace(d.data[vs]) {
				vs++
			}
			for vs < len(d.data) && isSpace(d.data[vs]) {
				vs++
			}
		}
		e, ok := flowEnd(d.data, vs)
		if !ok {
			return nil, d.errorAt(v.Line, "cannot find the end of %s's [...]: the console cannot edit it; check its brackets and quotes", l.key.Value)
		}
		ve = e
	case v.Value != "":
		vs = d.offset(v.Line, v.Column)
		if !bytes.HasPrefix(d.data[vs:], []byte(v.Value)) {
			return nil, d.errorAt(v.Line, "cannot find the value of %s here: write it as a list, or leave it empty", l.key.Value)
		}
		ve = vs + len(v.Value)
	default:
		// "key:" with nothing after it: the value goes after the colon.
		k := d.lines[l.key.Line-1]
		at := d.offset(l.key.Line, l.key.Column)
		c := bytes.IndexByte(d.data[at:k.end], ':')
		if c < 0 {
			return nil, d.errorAt(l.key.Line, "cannot find the colon after %s: write it as key: on a line of its own", l.key.Value)
		}
		vs, ve = at+c+1, at+c+1
	}
	if len(texts) == 0 {
		out := bytes.Clone(d.data[:vs])
		if vs == ve && (vs == 0 || d.data[vs-1] == ':') {
			out = append(out, ' ')
		}
		out = append(out, "[]"...)
		return append(out, d.data[ve:]...), nil
	}
	// The line (or lines) holding the value keep what is around it (a
	// comment); the items follow on lines of their own.
	ls, le := d.lineOf(vs), d.lineOf(ve)
	before := bytes.TrimRight(d.data[d.lines[ls].start:vs], " \t")
	after := d.data[ve:d.lines[le].end]
	if t := bytes.TrimSpace(after); len(t) > 0 && t[0] != '#' {
		return nil, d.errorAt(le+1, "something follows %s's value on this line: the console cannot edit it", l.key.Value)
	}
	out := bytes.Clone(d.data[:d.lines[ls].start])
	joined := append(bytes.Clone(before), after...)
	if len(bytes.TrimSpace(joined)) > 0 {
		out = append(out, joined...)
		out = append(out, d.nl...)
	}
	for _, t := range texts {
		out = append(out, t...)
	}
	rest := d.data[d.lines[le].next:]
	if len(rest) == 0 && d.lines[le].next == d.lines[le].end {
		out = bytes.TrimSuffix(out, []byte(d.nl))
	}
	return append(out, rest...), nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// lineOf is the line (from 0) holding byte offset o.
func (d *Doc) lineOf(o int) int {
	for i, l := range d.lines {
		if o <= l.end {
			return i
		}
	}
	return len(d.lines) - 1
}

// flowEnd is the offset just past the flow collection starting at
// data[start] ('[' or '{'), skipping quoted scalars and comments.
func flowEnd(data []byte, start int) (int, bool) {
	if start >= len(data) || data[start] != '[' && data[start] != '{' {
		return 0, false
	}
	depth := 0
	for i := start; i < len(data); i++ {
		switch c := data[i]; c {
		case '[', '{':
			depth++
		case ']', '}':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '\'':
			for i++; i < len(data); i++ {
				if data[i] == '\'' {
					if i+1 < len(data) && data[i+1] == '\'' {
						i++
						continue
					}
					break
				}
			}
		case '#':
			// A # starting a token starts a comment (the YAML library
			// takes one right after a flow indicator too).
			if i > start && bytes.IndexByte([]byte(" \t\r\n,[]{}"), data[i-1]) >= 0 {
				for i < len(data) && data[i] != '\n' {
					i++
				}
			}
		}
	}
	return 0, false
}

// render encodes v as one item of a block sequence whose dashes are at
// column col, lines ending with d.nl. Comment lines the encoding starts
// with go above the dash.
func (d *Doc) render(v any, col int) ([]byte, error) {
	n, ok := v.(*yaml.Node)
	if !ok {
		n = new(yaml.Node)
		if err := n.Encode(v); err != nil {
			return nil, err
		}
		flowLists(n)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	text := strings.TrimSuffix(b.String(), "\n")
	lines := strings.Split(text, "\n")
	pad := strings.Repeat(" ", col)
	var out []byte
	i := 0
	for ; i < len(lines)-1 && strings.HasPrefix(lines[i], "#"); i++ {
		out = append(out, pad+lines[i]+d.nl...)
	}
	for j, line := range lines[i:] {
		switch {
		case j == 0:
			out = append(out, pad+"- "+line...)
		case line == "":
		default:
			out = append(out, pad+"  "+line...)
		}
		out = append(out, d.nl...)
	}
	return out, nil
}

// flowLists writes every sequence of scalars in flow style.
func flowLists(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
		scalars := true
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode || strings.Contains(c.Value, "\n") {
				scalars = false
			}
		}
		if scalars {
			n.Style |= yaml.FlowStyle
		}
	}
	for _, c := range n.Content {
		flowLists(c)
	}
}

// readsAs reports whether item, the text of one sequence item, reads back
// as v.
func readsAs(item []byte, v any) bool {
	var n yaml.Node
	if yaml.Unmarshal(item, &n) != nil || len(n.Content) == 0 || len(n.Content[0].Content) != 1 {
		return false
	}
	var got any
	return decode(n.Content[0].Content[0], &got) == nil && reflect.DeepEqual(got, v)
}

// roundTrip is v as it reads back from YAML.
func roundTrip(v any) (any, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	var out any
	if err := decode(&n, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// commit keeps out as the file's content when it parses to the old data
// with key's value being want.
func (d *Doc) commit(key string, out []byte, want []any) error {
	var before any
	if d.root != nil {
		if err := decode(d.root, &before); err != nil {
			return d.yamlError(err)
		}
	}
	nd := &Doc{path: d.path, data: out, nl: d.nl}
	if err := nd.load(); err != nil {
		return d.refuse(key, err)
	}
	var after any
	if nd.root != nil {
		if err := decode(nd.root, &after); err != nil {
			return d.refuse(key, err)
		}
	}
	if !sameExcept(before, after, key, want) {
		return d.refuse(key, errors.New("the result reads back differently"))
	}
	*d = *nd
	return nil
}

func (d *Doc) refuse(key string, err error) error {
	return &Error{File: d.path, Msg: fmt.Sprintf("cannot edit %s in place without changing other settings (%v); the file is left as it was: edit it by hand", key, err)}
}

// sameExcept reports whether after is before with key set to want.
func sameExcept(before, after any, key string, want []any) bool {
	b, bok := asMap(before)
	a, aok := asMap(after)
	if !aok || (before != nil && !bok) {
		return false
	}
	v, ok := a[key]
	if !ok || !reflect.DeepEqual(v, any(want)) && !(len(want) == 0 && isEmptyList(v)) {
		return false
	}
	if _, had := b[key]; len(a) != len(b)+1 && !had || len(a) != len(b) && had {
		return false
	}
	for k, bv := range b {
		if k == key {
			continue
		}
		if av, ok := a[k]; !ok || !reflect.DeepEqual(av, bv) {
			return false
		}
	}
	return true
}

func isEmptyList(v any) bool {
	l, ok := v.([]any)
	return ok && len(l) == 0
}

// asMap is a decoded mapping with any keys (nil is the empty one).
func asMap(v any) (map[any]any, bool) {
	switch m := v.(type) {
	case nil:
		return map[any]any{}, true
	case map[string]any:
		out := make(map[any]any, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out, true
	case map[any]any:
		return m, true
	}
	return nil, false
}

// SetMapItem sets the item of the top-level sequence seqKey whose field
// nameField is name to value: in its place, field by field as Replace
// does, when there is one, else at the end (adding seqKey when absent).
// Every other item keeps its bytes. Two items of that name are an error.
func (d *Doc) SetMapItem(seqKey, nameField, name string, value any) error {
	l, err := d.layout(seqKey)
	if err != nil {
		return err
	}
	at, n, err := d.findItem(l, nameField, name)
	if err != nil {
		return err
	}
	items := make([]Item, 0, n+1)
	for i := range n {
		if i == at {
			items = append(items, Replace(i, value))
		} else {
			items = append(items, Keep(i))
		}
	}
	if at < 0 {
		items = append(items, New(value))
	}
	return d.SetSequence(seqKey, items)
}

// DeleteMapItem removes the item of the top-level sequence seqKey whose
// field nameField is name, with the comment lines above it. Without one,
// the error is ErrNoItem.
func (d *Doc) DeleteMapItem(seqKey, nameField, name string) error {
	l, err := d.layout(seqKey)
	if err != nil {
		return err
	}
	at, n, err := d.findItem(l, nameField, name)
	if err != nil {
		return err
	}
	if at < 0 {
		return fmt.Errorf("%s: %s has no item with %s: %s: %w", d.path, seqKey, nameField, name, ErrNoItem)
	}
	items := make([]Item, 0, n)
	for i := range n {
		if i != at {
			items = append(items, Keep(i))
		}
	}
	return d.SetSequence(seqKey, items)
}

// findItem is the index of the mapping item whose nameField is name (-1
// for none) and the number of items.
func (d *Doc) findItem(l *seqLayout, nameField, name string) (at, n int, err error) {
	at = -1
	if l.val == nil || l.val.Kind != yaml.SequenceNode {
		return at, 0, nil
	}
	for i, it := range l.val.Content {
		if it.Kind != yaml.MappingNode {
			continue
		}
		for j := 0; j+1 < len(it.Content); j += 2 {
			k, v := it.Content[j], it.Content[j+1]
			if k.Kind == yaml.ScalarNode && k.Value == nameField && v.Kind == yaml.ScalarNode && v.Value == name {
				if at >= 0 {
					return 0, 0, d.errorAt(it.Line, "a second item of %s has %s: %s (the first is at line %d): rename one", l.key.Value, nameField, name, l.val.Content[at].Line)
				}
				at = i
			}
		}
	}
	return at, len(l.val.Content), nil
}

// Len is the number of items of the top-level sequence key (0 when absent
// or empty), for building SetSequence's items.
func (d *Doc) Len(key string) (int, error) {
	l, err := d.layout(key)
	if err != nil || l.val == nil || l.val.Kind != yaml.SequenceNode {
		return 0, err
	}
	return len(l.val.Content), nil
}
