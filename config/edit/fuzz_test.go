package edit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzEdit: no file makes Parse or an edit panic; a file Parse takes is
// either edited to hold exactly the rules asked for, every other setting
// unchanged, or left as it was with an *Error.
func FuzzEdit(f *testing.F) {
	f.Add(rules3)
	f.Add(profiles)
	f.Add("")
	f.Add("rules: [a, {b: c}] # x\r\nlog: {}\r\n")
	f.Add("rules:\n- a\n-\n- - b\n  - c\n# c\n- |+\n  x\n\nk: v")
	f.Add("base: &b {a: 1}\nrules:\n  - <<: *b\n  - &c x\nz: *c\n")
	f.Add("\ufeff  rules: ~\n  x: 1\n...\n")
	f.Add("rules:\n  [a,\n   \"]\" , '#' # ]\n  ]\n")
	for _, p := range []string{"../../examples/mail.yaml", "../../examples/corp-dns.yaml", "../../dist/package/shunt.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(string(b))
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		f.Add(generate(r).text)
	}
	newRule := rule{Name: "fuzz", Ports: []any{1}, Action: "block"}
	f.Fuzz(func(t *testing.T, data string) {
		d, err := Parse("f.yaml", []byte(data))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != "f.yaml" || e.Line < 1 || e.Line > bytes.Count([]byte(data), []byte("\n"))+1 {
				t.Fatalf("Parse error %v (%T) does not name f.yaml and a line of it", err, err)
			}
			return
		}
		n, err := d.Len("rules")
		if err != nil {
			checkRefused(t, d, data, err)
			return
		}
		// The fixed edit: a new rule first, then the old ones reversed.
		items := []Item{New(newRule)}
		for i := n - 1; i >= 0; i-- {
			items = append(items, Keep(i))
		}
		if err := d.SetSequence("rules", items); err != nil {
			checkRefused(t, d, data, err)
			return
		}
		var before, after map[string]any
		if err := yaml.Unmarshal([]byte(data), &before); err != nil {
			t.Skip("yaml.v3 reads the file as a whole differently from its nodes") // not this package's to judge
		}
		out := d.Bytes()
		if err := yaml.Unmarshal(out, &after); err != nil {
			t.Fatalf("the result does not parse: %v\n%q", err, out)
		}
		old, _ := before["rules"].([]any)
		want := []any{map[string]any{"name": "fuzz", "ports": []any{1}, "action": "block"}}
		for _, v := range slices.Backward(old) {
			want = append(want, v)
		}
		if !reflect.DeepEqual(after["rules"], want) {
			t.Fatalf("rules read back as %#v, want %#v\n%q", after["rules"], want, out)
		}
		delete(after, "rules")
		delete(before, "rules")
		if (len(after) > 0 || len(before) > 0) && !reflect.DeepEqual(after, before) && !hasNaN(before) {
			t.Fatalf("other settings changed: %v, were %v\n%q", after, before, out)
		}
		if n == 0 {
			return
		}
		// Then the old first rule, now the last, replaced field by field.
		items = items[:0]
		for i := range n {
			items = append(items, Keep(i))
		}
		items = append(items, Replace(n, map[string]any{"name": "r", "action": "direct"}))
		if err := d.SetSequence("rules", items); err != nil {
			checkRefused(t, d, string(out), err)
			return
		}
		var again map[string]any
		if err := yaml.Unmarshal(d.Bytes(), &again); err != nil {
			t.Fatalf("the result does not parse: %v\n%q", err, d.Bytes())
		}
		want[n] = map[string]any{"name": "r", "action": "direct"}
		if !reflect.DeepEqual(again["rules"], want) {
			t.Fatalf("rules read back as %#v, want %#v\n%q", again["rules"], want, d.Bytes())
		}
	})
}

func checkRefused(t *testing.T, d *Doc, data string, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.File != "f.yaml" {
		t.Fatalf("edit error %v (%T) does not name f.yaml", err, err)
	}
	if string(d.Bytes()) != data {
		t.Fatalf("a refused edit changed the file")
	}
}

// hasNaN reports whether v holds a NaN, which equals nothing.
func hasNaN(v any) bool {
	switch v := v.(type) {
	case float64:
		return v != v
	case []any:
		return slices.ContainsFunc(v, hasNaN)
	case map[string]any:
		for _, e := range v {
			if hasNaN(e) {
				return true
			}
		}
	case map[any]any:
		for k, e := range v {
			if hasNaN(k) || hasNaN(e) {
				return true
			}
		}
	}
	return false
}
