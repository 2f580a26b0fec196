package tectia

import (
	"encoding/json"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var plainScalar = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*$`)

// scalar writes s as a YAML string: plain when YAML reads it back as the
// same string, double-quoted otherwise.
func scalar(s string) string {
	if plainScalar.MatchString(s) {
		var v any
		if err := yaml.Unmarshal([]byte(s), &v); err == nil {
			if back, ok := v.(string); ok && back == s {
				return s
			}
		}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a JSON string is a valid YAML double-quoted scalar
	return strings.TrimSuffix(b.String(), "\n")
}

// checkYAML makes sure the output parses as a YAML mapping.
func checkYAML(out []byte) error {
	var m map[string]any
	return yaml.Unmarshal(out, &m)
}
