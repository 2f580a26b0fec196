package tectia

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// element is one XML element of the Tectia file, with the lines where it
// and each of its attributes were written.
type element struct {
	Name     string
	Line     int
	Attrs    []attr
	Children []*element
	// TextLine is the line of the first non-blank text directly inside
	// the element (0: none). Tectia's elements hold attributes and
	// children, not text.
	TextLine int
}

// attr is one attribute and the line it was written on.
type attr struct {
	Name  string
	Value string
	Line  int
}

// parseXML reads the whole document into a tree of elements. The error of
// a malformed document names the file and line.
func parseXML(data []byte, name string) (*element, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.CharsetReader = charsetReader
	var root *element
	var stack []*element
	for {
		line, _ := d.InputPos()
		start := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, fmt.Errorf("%s:%d: malformed XML: %s", name, se.Line, se.Msg)
			}
			line, _ := d.InputPos()
			return nil, fmt.Errorf("%s:%d: cannot read the XML: %w", name, line, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			e := &element{Name: qualified(t.Name), Line: line}
			e.Attrs = attrLines(data[start:d.InputOffset()], line, t.Attr)
			if len(stack) == 0 {
				if root != nil {
					return nil, fmt.Errorf("%s:%d: malformed XML: a second root element <%s>", name, line, e.Name)
				}
				root = e
			} else {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && len(bytes.TrimSpace(t)) > 0 {
				if p := stack[len(stack)-1]; p.TextLine == 0 {
					// The token ends where the text does; count back to
					// its first non-blank character.
					lead := len(t) - len(bytes.TrimLeft(t, " \t\r\n"))
					p.TextLine = line + bytes.Count(t[:lead], []byte("\n"))
				}
			}
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%s:1: malformed XML: no root element", name)
	}
	return root, nil
}

func qualified(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}

// attrLines pairs each attribute with its line, found by scanning the raw
// start tag (which begins on line first) in document order.
func attrLines(tag []byte, first int, attrs []xml.Attr) []attr {
	out := make([]attr, 0, len(attrs))
	cur := 0
	for _, a := range attrs {
		line := first
		if a.Name.Space == "" {
			if at, next := findAttr(tag, cur, a.Name.Local); at >= 0 {
				line = first + bytes.Count(tag[:at], []byte("\n"))
				cur = next
			}
		}
		out = append(out, attr{Name: qualified(a.Name), Value: a.Value, Line: line})
	}
	return out
}

// findAttr finds `name =` at or after from in a raw start tag, preceded by
// white space, and returns its offset and the offset just past its quoted
// value (or -1).
func findAttr(tag []byte, from int, name string) (at, next int) {
	for i := from; i < len(tag); {
		j := bytes.Index(tag[i:], []byte(name))
		if j < 0 {
			return -1, 0
		}
		j += i
		k := j + len(name)
		for k < len(tag) && isSpace(tag[k]) {
			k++
		}
		if j > 0 && isSpace(tag[j-1]) && k < len(tag) && tag[k] == '=' {
			k++
			for k < len(tag) && isSpace(tag[k]) {
				k++
			}
			if k < len(tag) && (tag[k] == '"' || tag[k] == '\'') {
				if end := bytes.IndexByte(tag[k+1:], tag[k]); end >= 0 {
					return j, k + 1 + end + 1
				}
			}
			return j, k
		}
		i = j + 1
	}
	return -1, 0
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// charsetReader accepts the encodings a Tectia file may declare besides
// UTF-8: ASCII and Latin-1 (whose bytes are the first 256 code points).
func charsetReader(label string, r io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "us-ascii", "ascii":
		return r, nil
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1":
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		var sb strings.Builder
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return strings.NewReader(sb.String()), nil
	}
	return nil, fmt.Errorf("encoding %q is not supported: convert the file to UTF-8 (e.g. iconv -t UTF-8)", label)
}
