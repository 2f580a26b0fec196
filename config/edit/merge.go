package edit

import (
	"bytes"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// field is one key of a block mapping item, with its lines: head the
// comment lines above it, body its key line and value, tail the blank and
// comment lines after it up to the next field's head (or the item's end).
type field struct {
	key              string
	head, body, tail []byte
}

// merge is the text of item i of l's sequence with its fields set to v's,
// keeping the text of the fields whose values stay (see Replace); nil when
// the item or v is not a block mapping this can work on.
func (d *Doc) merge(l *seqLayout, i int, v any) []byte {
	old := l.val.Content[i]
	if old.Kind != yaml.MappingNode || old.Style&yaml.FlowStyle != 0 || len(old.Content) == 0 || old.Line-1 != l.dash[i] {
		return nil
	}
	nn, ok := v.(*yaml.Node)
	if !ok {
		nn = new(yaml.Node)
		if nn.Encode(v) != nil {
			return nil
		}
		flowLists(nn)
	}
	if nn.Kind == yaml.DocumentNode && len(nn.Content) == 1 {
		nn = nn.Content[0]
	}
	if nn.Kind != yaml.MappingNode {
		return nil
	}
	mc := old.Column - 1
	if mc < l.col+2 || mc > len(d.text(l.dash[i])) {
		return nil
	}
	// The dash line's start must be spaces, the dash and spaces.
	if t := d.text(l.dash[i])[:mc]; string(t) != strings.Repeat(" ", l.col)+"-"+strings.Repeat(" ", mc-l.col-1) {
		return nil
	}

	// The old fields, in order.
	var fields []field
	var keyLines []int
	for j := 0; j+1 < len(old.Content); j += 2 {
		k := old.Content[j]
		if k.Kind != yaml.ScalarNode || k.Column-1 != mc || (j > 0 && k.Line-1 <= keyLines[len(keyLines)-1]) {
			return nil
		}
		keyLines = append(keyLines, k.Line-1)
	}
	heads := make([]int, len(keyLines))
	for j, kl := range keyLines {
		heads[j] = kl
		for j > 0 && heads[j]-1 > keyLines[j-1] {
			ind, _, comment := d.indent(heads[j] - 1)
			if !comment || ind > mc {
				break
			}
			heads[j]--
		}
	}
	for j, kl := range keyLines {
		end := l.last[i]
		if j+1 < len(keyLines) {
			end = heads[j+1] - 1
		}
		last := kl
		for n := kl + 1; n <= end; n++ {
			if _, blank, comment := d.indent(n); !blank && !comment {
				last = n
			}
		}
		f := field{key: old.Content[2*j].Value, body: d.lineText(kl, last)}
		if last < end {
			f.tail = d.lineText(last+1, end)
		}
		if heads[j] < kl {
			f.head = d.lineText(heads[j], kl-1)
		}
		if j == 0 {
			copy(f.body, strings.Repeat(" ", mc))
		}
		fields = append(fields, f)
	}

	// v's fields: kept, changed or new.
	newVals := map[string]*yaml.Node{}
	var newOrder []string
	for j := 0; j+1 < len(nn.Content); j += 2 {
		k := nn.Content[j]
		if k.Kind != yaml.ScalarNode {
			return nil
		}
		if _, dup := newVals[k.Value]; dup {
			return nil
		}
		newVals[k.Value] = nn.Content[j+1]
		newOrder = append(newOrder, k.Value)
	}
	var out []field
	seen := map[string]bool{}
	for j, f := range fields {
		nv, ok := newVals[f.key]
		if !ok || seen[f.key] {
			continue // removed
		}
		seen[f.key] = true
		ov := old.Content[2*j+1]
		var a, b any
		if decode(ov, &a) != nil || decode(nv, &b) != nil {
			return nil
		}
		if reflect.DeepEqual(a, b) {
			out = append(out, f)
			continue
		}
		body, ok := d.renderField(old.Content[2*j], nv, mc)
		if !ok {
			return nil
		}
		// The line-end comment of a value on one line stays when the new
		// value fits on one line too.
		comment := ov.LineComment
		if comment == "" {
			comment = old.Content[2*j].LineComment
		}
		if comment != "" && bytes.Count(f.body, []byte("\n")) == 1 && bytes.Count(body, []byte("\n")) == 1 {
			line := d.text(keyLines[j])
			if c := bytes.LastIndex(line, []byte(comment)); c > 0 && (line[c-1] == ' ' || line[c-1] == '\t') {
				text := bytes.TrimSuffix(body, []byte(d.nl))
				gap := c - len(text)
				if gap < 1 {
					gap = 1
				}
				body = append(append(append(text, strings.Repeat(" ", gap)...), line[c:]...), d.nl...)
			}
		}
		out = append(out, field{key: f.key, head: f.head, body: body, tail: f.tail})
	}
	// The comment lines ending the item stay at its end, after new
	// fields.
	var end []byte
	if len(out) > 0 {
		end, out[len(out)-1].tail = out[len(out)-1].tail, nil
	}
	for _, k := range newOrder {
		if seen[k] {
			continue
		}
		body, ok := d.renderField(&yaml.Node{Kind: yaml.ScalarNode, Value: k}, newVals[k], mc)
		if !ok {
			return nil
		}
		out = append(out, field{key: k, body: body})
	}
	if len(out) == 0 {
		return nil
	}
	var res []byte
	res = append(res, out[0].head...)
	first := bytes.Clone(out[0].body)
	copy(first[l.col:], "- ")
	res = append(res, first...)
	res = append(res, out[0].tail...)
	for _, f := range out[1:] {
		res = append(res, f.head...)
		res = append(res, f.body...)
		res = append(res, f.tail...)
	}
	return append(res, end...)
}

// renderField is "key: value" at column mc, lines ending with d.nl.
func (d *Doc) renderField(key, value *yaml.Node, mc int) ([]byte, bool) {
	k := *key
	k.HeadComment, k.LineComment, k.FootComment = "", "", ""
	m := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{&k, value}}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if enc.Encode(m) != nil || enc.Close() != nil {
		return nil, false
	}
	pad := strings.Repeat(" ", mc)
	var out []byte
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if line != "" {
			out = append(out, pad+line...)
		}
		out = append(out, d.nl...)
	}
	return out, true
}
