package edit

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// genFile is a random configuration whose rules are known line by line:
// blocks[k] is item k's text (its comment lines above it included),
// prefix and suffix what comes before the first and after the last.
type genFile struct {
	text, prefix, suffix string
	blocks               []string
	gaps                 []string
	noFinalBreak         bool
}

func generate(r *rand.Rand) genFile {
	nl := "\n"
	if r.IntN(4) == 0 {
		nl = "\r\n"
	}
	col := strings.Repeat(" ", 2*r.IntN(2))
	var g genFile
	var p strings.Builder
	if r.IntN(2) == 0 {
		p.WriteString("# a configuration" + nl + nl)
	}
	if r.IntN(2) == 0 {
		p.WriteString("profiles:" + nl + "  - name: p   # the one" + nl + "    host: h" + nl + nl)
	}
	p.WriteString("rules:")
	if r.IntN(2) == 0 {
		p.WriteString("   # ordered")
	}
	p.WriteString(nl)
	if r.IntN(3) == 0 {
		p.WriteString(nl)
	}
	g.prefix = p.String()
	n := 1 + r.IntN(6)
	for k := range n {
		var b strings.Builder
		for range r.IntN(3) {
			fmt.Fprintf(&b, "%s# about r%d%s", col, k, nl)
		}
		fmt.Fprintf(&b, "%s- name: r%d", col, k)
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "   # r%d's end", k)
		}
		b.WriteString(nl)
		if r.IntN(2) == 0 {
			fmt.Fprintf(&b, "%s  ports: [%d, \"%d-%d\"]%s", col, k, k+10, k+20, nl)
		}
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "%s  note: |%s%s    text of r%d%s%s%s    more%s", col, nl, col, k, nl, nl, col, nl)
		}
		fmt.Fprintf(&b, "%s  action: block%s", col, nl)
		if r.IntN(3) == 0 {
			fmt.Fprintf(&b, "%s  # profile: p (r%d)%s", col, k, nl)
		}
		g.blocks = append(g.blocks, b.String())
		if k+1 < n {
			gap := []string{"", nl, nl + nl, nl + fmt.Sprintf("# gap %d", k) + nl + nl}[r.IntN(4)]
			g.gaps = append(g.gaps, gap)
		}
	}
	var s strings.Builder
	if r.IntN(2) == 0 {
		s.WriteString(nl + "# after the rules" + nl)
	}
	if r.IntN(2) == 0 {
		s.WriteString("log:" + nl + "  level: info   # or debug" + nl)
	}
	g.suffix = s.String()
	var t strings.Builder
	t.WriteString(g.prefix)
	for k, b := range g.blocks {
		if k > 0 {
			t.WriteString(g.gaps[k-1])
		}
		t.WriteString(b)
	}
	t.WriteString(g.suffix)
	g.text = t.String()
	if r.IntN(4) == 0 {
		g.noFinalBreak = true
		g.text = strings.TrimSuffix(g.text, nl)
	}
	return g
}

// TestProperty: after a random edit of a random file, the lines outside
// the sequence, the kept items (with their comments) and the comments
// between items are there byte for byte, in the order asked, and the file
// reads back as the intended data.
func TestProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 1000 {
		g := generate(r)
		d, err := Parse("f.yaml", []byte(g.text))
		if err != nil {
			t.Fatalf("%d: Parse(%q): %v", iter, g.text, err)
		}
		var orig map[string]any
		if err := yaml.Unmarshal([]byte(g.text), &orig); err != nil {
			t.Fatal(err)
		}
		old := orig["rules"].([]any)
		// A random edit: some items kept, in a random order, some new,
		// some replaced.
		var items []Item
		var want []any
		var keptBlocks []string
		for _, i := range r.Perm(len(old)) {
			switch r.IntN(5) {
			case 0: // deleted
			case 1:
				v := rule{Name: fmt.Sprintf("replaced%d", i), Action: "direct"}
				items = append(items, Replace(i, v))
				want = append(want, map[string]any{"name": v.Name, "action": "direct"})
			default:
				items = append(items, Keep(i))
				want = append(want, old[i])
				keptBlocks = append(keptBlocks, g.blocks[i])
			}
			if r.IntN(4) == 0 {
				v := rule{Name: fmt.Sprintf("new%d", len(items)), Ports: []any{1, "2-3"}, Action: "block"}
				items = append(items, New(v))
				want = append(want, map[string]any{"name": v.Name, "ports": []any{1, "2-3"}, "action": "block"})
			}
		}
		if err := d.SetSequence("rules", items); err != nil {
			t.Fatalf("%d: SetSequence on %q: %v", iter, g.text, err)
		}
		out := string(d.Bytes())
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("%d: %s\nin:\n%s\nout:\n%s", iter, fmt.Sprintf(format, args...), g.text, out)
		}
		var got map[string]any
		if err := yaml.Unmarshal([]byte(out), &got); err != nil {
			fail("the result does not parse: %v", err)
		}
		if want == nil {
			want = []any{}
		}
		if !reflect.DeepEqual(got["rules"], want) {
			fail("rules read back as %#v, want %#v", got["rules"], want)
		}
		delete(got, "rules")
		delete(orig, "rules")
		if !reflect.DeepEqual(got, orig) {
			fail("the other settings changed: %v, were %v", got, orig)
		}
		if len(want) > 0 && !strings.HasPrefix(out, g.prefix) {
			fail("the lines before the rules changed")
		}
		suffix := g.suffix
		if g.noFinalBreak {
			if strings.HasSuffix(out, "\n") {
				fail("a line break was added at the end")
			}
			out += "\n"
			if strings.Contains(g.text, "\r\n") {
				out = strings.TrimSuffix(out, "\n") + "\r\n"
			}
		}
		if !strings.HasSuffix(out, suffix) {
			fail("the lines after the rules changed")
		}
		at := len(g.prefix)
		if len(want) == 0 {
			at = 0
		}
		for _, b := range keptBlocks {
			i := strings.Index(out[at:], b)
			if i < 0 {
				fail("kept item %q is not there, in order", b)
			}
			at += i + len(b)
		}
		for _, gap := range g.gaps {
			if c := strings.TrimSpace(gap); c != "" && strings.Count(out, c) != 1 {
				fail("the comment %q between items is not there once", c)
			}
		}
	}
}
