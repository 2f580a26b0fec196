// Command report is the arithmetic and bookkeeping of bench/run, kept out of
// bash:
//
//	report iperf FILE          "<bits/s> <bytes>" received, from iperf3 --json
//	report field FILE KEY      a top-level number from a JSON object (latency's output)
//	report cpu PID             CPU ticks (utime+stime) of PID and its descendants
//	report rss PID             VmRSS in KiB of PID and its descendants
//	report render -samples F -notes F -out DIR [-meta key=value]...
//	                           results.md and results.json; prints the Markdown
//
// Standard library only; /proc is read directly.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		die(errors.New("usage: report iperf|field|cpu|rss|render ..."))
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "iperf":
		err = cmdIperf(args)
	case "field":
		err = cmdField(args)
	case "cpu":
		err = cmdProc(args, true)
	case "rss":
		err = cmdProc(args, false)
	case "render":
		err = cmdRender(args)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		die(err)
	}
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

func cmdIperf(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: report iperf FILE")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes float64 `json:"bytes"`
				BPS   float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: not iperf3 JSON: %v", args[0], err)
	}
	if r.Error != "" {
		return fmt.Errorf("%s: iperf3: %s", args[0], r.Error)
	}
	if r.End.SumReceived.Bytes == 0 {
		return fmt.Errorf("%s: iperf3 moved no bytes", args[0])
	}
	fmt.Printf("%.0f %.0f\n", r.End.SumReceived.BPS, r.End.SumReceived.Bytes)
	return nil
}

func cmdField(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: report field FILE KEY")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%s: %v", args[0], err)
	}
	v, ok := m[args[1]]
	if !ok {
		return fmt.Errorf("%s: no field %q", args[0], args[1])
	}
	f, ok := v.(float64)
	if !ok {
		return fmt.Errorf("%s: field %q is %v, not a number", args[0], args[1], v)
	}
	fmt.Println(strconv.FormatFloat(f, 'f', -1, 64))
	return nil
}

// tree returns pid and all its descendants.
func tree(root int) ([]int, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", root)); err != nil {
		return nil, fmt.Errorf("process %d is gone", root)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// statFields returns the fields of /proc/PID/stat after the command name:
// [0] is the state, [1] the parent, [11] utime, [12] stime.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return f, nil
}

func cmdProc(args []string, cpu bool) error {
	if len(args) != 1 {
		return errors.New("usage: report cpu|rss PID")
	}
	root, err := strconv.Atoi(args[0])
	if err != nil {
		return fmt.Errorf("bad pid %q", args[0])
	}
	pids, err := tree(root)
	if err != nil {
		return err
	}
	var total int64
	for _, pid := range pids {
		if cpu {
			f, err := statFields(pid)
			if err != nil {
				continue // exited meanwhile
			}
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + s
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
				total += kb
			}
		}
	}
	fmt.Println(total)
	return nil
}

// metric describes one row of the table.
type metric struct {
	Key    string  `json:"key"`
	Label  string  `json:"label"`
	Unit   string  `json:"unit"`
	Better string  `json:"better"`
	Scale  float64 `json:"-"` // display = value / Scale
	Digits int     `json:"-"`
}

var metrics = []metric{
	{"fwd_gbps", "Throughput, 1 stream, client → internal", "Gbit/s", "higher", 1, 2},
	{"rev_gbps", "Throughput, 1 stream, internal → client (-R)", "Gbit/s", "higher", 1, 2},
	{"p4_gbps", "Throughput, 4 streams (-P 4), client → internal", "Gbit/s", "higher", 1, 2},
	{"bulk_fwd_gbps", "Throughput, 1 stream via the bulk tool, client → internal", "Gbit/s", "higher", 1, 2},
	{"bulk_rev_gbps", "Throughput, 1 stream via the bulk tool, internal → client", "Gbit/s", "higher", 1, 2},
	{"netem20_gbps", "Throughput, 1 stream, +20 ms RTT", "Gbit/s", "higher", 1, 3},
	{"netem100_gbps", "Throughput, 1 stream, +100 ms RTT", "Gbit/s", "higher", 1, 3},
	{"lat_p50_ms", "New flow (request, one-write answer): connect to first byte, p50", "ms", "lower", 1, 3},
	{"lat_p99_ms", "New flow (request, one-write answer): connect to first byte, p99", "ms", "lower", 1, 3},
	{"name_p50_ms", "New flow to a tunnelled name (shunt: look-up + connect; SOCKS: the name to the proxy; others: to the address), p50", "ms", "lower", 1, 3},
	{"name_p99_ms", "New flow to a tunnelled name (shunt: look-up + connect; SOCKS: the name to the proxy; others: to the address), p99", "ms", "lower", 1, 3},
	{"banner_p50_ms", "New flow (server speaks first): connect to first byte, p50", "ms", "lower", 1, 3},
	{"banner_p99_ms", "New flow (server speaks first): connect to first byte, p99", "ms", "lower", 1, 3},
	{"rate_fps", "New flows per second, sustained", "flows/s", "higher", 1, 0},
	{"flow_errors", "Flows failed (latency, rate and held-flow tests)", "flows", "lower", 1, 0},
	{"cpu_fwd_s_per_gb", "Client CPU per GB, forward", "CPU s/GB", "lower", 1, 2},
	{"cpu_rev_s_per_gb", "Client CPU per GB, reverse", "CPU s/GB", "lower", 1, 2},
	{"cpu_bulk_fwd_s_per_gb", "Client CPU per GB, bulk tool, forward", "CPU s/GB", "lower", 1, 2},
	{"cpu_bulk_rev_s_per_gb", "Client CPU per GB, bulk tool, reverse", "CPU s/GB", "lower", 1, 2},
	{"rss_idle_kib", "Client RSS, idle (warm, before load)", "MiB", "lower", 1024, 1},
	{"rss_per_flow_kib", "Client RSS per held idle flow", "KiB/flow", "lower", 1, 1},
	{"hold_open_s", "Time to open the held flows", "s", "lower", 1, 2},
	{"status_ms", "shunt status --json while the flows are held", "ms", "lower", 1, 1},
	{"status_kib", "Size of that answer", "KiB", "lower", 1, 0},
}

type method struct{ Key, Label string }

var methods = []method{
	{"plain", "plain routed"},
	{"sshl", "ssh -L"},
	{"sshd", "ssh -D"},
	{"sshuttle", "sshuttle"},
	{"shunt", "shunt"},
	{"socks", "shunt SOCKS"},
	{"singbox-gvisor", "sing-box gVisor"},
	{"singbox-system", "sing-box system"},
}

const baseline = "sshl"

// against are the further comparisons: shunt's SOCKS listener against its
// yardstick, OpenSSH's ssh -D, and against shunt's own TUN path; shunt
// against sing-box, the same design (a TUN, a user-space or the kernel's
// TCP stack, x/crypto/ssh) built by others.
var against = []struct {
	Method string `json:"method"`
	Other  string `json:"against"`
	Label  string `json:"label"`
}{
	{"socks", "sshd", "ssh -D"},
	{"socks", "shunt", "shunt (TUN)"},
	{"shunt", "singbox-gvisor", "sing-box gVisor"},
	{"shunt", "singbox-system", "sing-box system"},
}

type sample struct {
	Method string  `json:"method"`
	Metric string  `json:"metric"`
	Rep    int     `json:"rep"`
	Value  float64 `json:"value"`
}

type summary struct {
	N      int      `json:"n"`
	Median float64  `json:"median"`
	Min    float64  `json:"min"`
	Max    float64  `json:"max"`
	Ratio  *float64 `json:"ratio_to_ssh_l,omitempty"`
	// Ratios are the median's ratio to other methods' (against), by
	// method key.
	Ratios map[string]float64 `json:"ratios,omitempty"`
}

type metaFlag map[string]string

func (m metaFlag) String() string { return fmt.Sprint(map[string]string(m)) }
func (m metaFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("-meta %q: want key=value", s)
	}
	m[k] = v
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func cmdRender(args []string) error {
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	samplesPath := fs.String("samples", "", "samples `file`: method<TAB>metric<TAB>rep<TAB>value per line")
	notesPath := fs.String("notes", "", "notes `file`: one note per line")
	outDir := fs.String("out", "", "output `directory`")
	meta := metaFlag{}
	fs.Var(meta, "meta", "key=value to record (machine.*, version.*, git.*, anything else is a setting)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *samplesPath == "" || *outDir == "" {
		return errors.New("render needs -samples and -out")
	}
	var samples []sample
	b, err := os.ReadFile(*samplesPath)
	if err != nil {
		return err
	}
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return fmt.Errorf("%s:%d: want 4 tab-separated fields", *samplesPath, i+1)
		}
		rep, err1 := strconv.Atoi(f[2])
		v, err2 := strconv.ParseFloat(f[3], 64)
		if err1 != nil || err2 != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s:%d: bad rep or value in %q", *samplesPath, i+1, line)
		}
		samples = append(samples, sample{f[0], f[1], rep, v})
	}
	var notes []string
	if *notesPath != "" {
		if b, err := os.ReadFile(*notesPath); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					notes = append(notes, l)
				}
			}
		}
	}

	// Summaries.
	vals := map[string]map[string][]float64{}
	for _, s := range samples {
		if vals[s.Method] == nil {
			vals[s.Method] = map[string][]float64{}
		}
		vals[s.Method][s.Metric] = append(vals[s.Method][s.Metric], s.Value)
	}
	sum := map[string]map[string]summary{}
	for m, byMetric := range vals {
		sum[m] = map[string]summary{}
		for k, v := range byMetric {
			sum[m][k] = summary{N: len(v), Median: median(v), Min: slices.Min(v), Max: slices.Max(v)}
		}
	}
	for m := range sum {
		for k, s := range sum[m] {
			if base, ok := sum[baseline][k]; ok && base.Median != 0 {
				r := s.Median / base.Median
				s.Ratio = &r
				sum[m][k] = s
			}
		}
	}
	for _, a := range against {
		for k, s := range sum[a.Method] {
			if o, ok := sum[a.Other][k]; ok && o.Median != 0 {
				if s.Ratios == nil {
					s.Ratios = map[string]float64{}
				}
				s.Ratios[a.Other] = s.Median / o.Median
				sum[a.Method][k] = s
			}
		}
	}

	md := renderMarkdown(sum, meta, notes)
	if err := os.WriteFile(filepath.Join(*outDir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}

	doc := map[string]any{
		"machine":  map[string]string{},
		"versions": map[string]string{},
		"git":      map[string]string{},
		"settings": map[string]string{},
		"metrics":  metrics,
		"methods":  methods,
		"baseline": baseline,
		"against":  against,
		"summary":  sum,
		"samples":  samples,
		"notes":    notes,
	}
	for k, v := range meta {
		section := "settings"
		for _, p := range []string{"machine", "versions", "git"} {
			if rest, ok := strings.CutPrefix(k, strings.TrimSuffix(p, "s")+"."); ok {
				section, k = p, rest
			}
		}
		if k == "date" {
			doc["date"] = v
			continue
		}
		doc[section].(map[string]string)[k] = v
	}
	j, _ := json.MarshalIndent(doc, "", "  ")
	if err := os.WriteFile(filepath.Join(*outDir, "results.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Print(md)
	return nil
}

func num(v float64, digits int) string {
	return strconv.FormatFloat(v, 'f', digits, 64)
}

func renderMarkdown(sum map[string]map[string]summary, meta map[string]string, notes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## shunt benchmark, %s\n\n", meta["date"])
	fmt.Fprintf(&b, "%s (%s cores), Linux %s, commit %s; %s repetition(s), iperf3 %s s per run.\n\n",
		meta["machine.cpu_model"], meta["machine.nproc"], meta["machine.kernel"], meta["git.commit"], meta["reps"], meta["duration"])
	b.WriteString("Each cell: median [min–max] over the repetitions, then ×ratio of the medians to `ssh -L` in this run")
	b.WriteString(" (for ms, CPU and memory lower is better; for the rest higher is better). — means not measured for that method.\n\n")
	// A column for each method measured: one skipped (sshuttle or
	// sing-box not installed) or not asked for has none.
	var measured []method
	for _, m := range methods {
		if len(sum[m.Key]) > 0 {
			measured = append(measured, m)
		}
	}
	b.WriteString("| metric | unit |")
	for _, m := range measured {
		fmt.Fprintf(&b, " %s |", m.Label)
	}
	b.WriteString("\n|---|---|")
	for range measured {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, mt := range metrics {
		has := false
		for _, m := range measured {
			if _, ok := sum[m.Key][mt.Key]; ok {
				has = true
			}
		}
		if !has {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", mt.Label, mt.Unit)
		for _, m := range measured {
			s, ok := sum[m.Key][mt.Key]
			if !ok {
				b.WriteString(" — |")
				continue
			}
			cell := num(s.Median/mt.Scale, mt.Digits)
			if s.N > 1 {
				cell += " [" + num(s.Min/mt.Scale, mt.Digits) + "–" + num(s.Max/mt.Scale, mt.Digits) + "]"
			}
			if s.Ratio != nil {
				cell += " ×" + num(*s.Ratio, 2)
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	renderAgainst(&b, sum)
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

func label(key string) string {
	for _, m := range methods {
		if m.Key == key {
			return m.Label
		}
	}
	return key
}

// renderAgainst writes a table per method compared with others (against),
// if that method and at least one of the others were measured: its
// medians and their ratios.
func renderAgainst(b *strings.Builder, sum map[string]map[string]summary) {
	var done []string
	for _, a := range against {
		if slices.Contains(done, a.Method) || len(sum[a.Method]) == 0 {
			continue
		}
		done = append(done, a.Method)
		var others, labels []string
		for _, o := range against {
			if o.Method == a.Method && len(sum[o.Other]) > 0 {
				others = append(others, o.Other)
				labels = append(labels, o.Label)
			}
		}
		if len(others) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n%s against", label(a.Method))
		for i, l := range labels {
			if i > 0 {
				b.WriteString(" and")
			}
			fmt.Fprintf(b, " %s", l)
		}
		b.WriteString(": its median, then ×ratio of the medians (below 1 is better for ms, CPU and memory, above 1 for the rest).\n\n")
		fmt.Fprintf(b, "| metric | unit | %s |", label(a.Method))
		for _, l := range labels {
			fmt.Fprintf(b, " ×%s |", l)
		}
		b.WriteString("\n|---|---|---|")
		for range others {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for _, mt := range metrics {
			s, ok := sum[a.Method][mt.Key]
			if !ok {
				continue
			}
			fmt.Fprintf(b, "| %s | %s | %s |", mt.Label, mt.Unit, num(s.Median/mt.Scale, mt.Digits))
			for _, o := range others {
				if r, ok := s.Ratios[o]; ok {
					fmt.Fprintf(b, " ×%s |", num(r, 2))
				} else {
					b.WriteString(" — |")
				}
			}
			b.WriteString("\n")
		}
	}
}
