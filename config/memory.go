package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MinFlowMemory is the smallest flow_memory: one stalled tunnelled flow
// alone may hold about 3 MiB (the SSH channel's 2 MiB window and the
// stack's send queue), so a smaller budget would reset flows that are
// merely slow.
const MinFlowMemory = 16 << 20

// ByteSize is an amount of memory as written: a byte count ("536870912")
// or a number with a binary unit ("512MiB", "1.5GiB"; KiB, MiB, GiB, TiB,
// and K, M, G, T, KB, MB, GB, TB read as the same binary units, as
// memory is counted). Bytes is 0 when the key is not set.
type ByteSize struct {
	Bytes int64
	Set   bool
	scalar
}

// UnmarshalYAML implements yaml.Unmarshaler; a value that is no size is
// reported by validation, at its line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	b.scalar = scalar{Raw: n.Value, Line: n.Line}
	b.Set = true
	b.Bytes, b.err = parseByteSize(n.Value)
	return nil
}

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

func parseByteSize(s string) (int64, error) {
	v := strings.TrimSpace(s)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.ToLower(strings.TrimSpace(v[i:]))
	}
	mul, ok := byteUnits[unit]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || num == "" || f < 0 {
		return 0, fmt.Errorf("%q is not an amount of memory: write e.g. 512MiB, 2GiB or a number of bytes", s)
	}
	bytes := f * float64(mul)
	if bytes >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is more memory than any machine has: write e.g. 512MiB or 2GiB", s)
	}
	return int64(bytes), nil
}

// validateFlowMemory checks flow_memory. Its default depends on the
// machine, so the engine fills it in (Bytes stays 0 when not set).
func (c *Config) validateFlowMemory(errorAt func(string, int, string, ...any)) {
	m := &c.FlowMemory
	switch {
	case m.err != nil:
		errorAt(c.flowMemoryFile, m.Line, "flow_memory: %v", m.err)
	case m.Set && m.Bytes < MinFlowMemory:
		errorAt(c.flowMemoryFile, m.Line, "flow_memory %s is below the smallest budget, %dMiB: one stalled tunnelled flow alone holds up to about 3 MiB; write at least %dMiB, or remove the key for the default (an eighth of the machine's memory)",
			m.Raw, MinFlowMemory>>20, MinFlowMemory>>20)
	}
}
