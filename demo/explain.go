// Package demo builds a small world in network namespaces (a client, an
// SSH gateway and an internal host), runs shunt in the client against the
// gateway, and shows a download, a web request, a speak-first service and
// a blocked connection going through it, each explained from shunt's own
// status data.
package demo

import (
	"fmt"
	"strings"

	"github.com/shunt-dev/shunt/state"
)

// Step is one thing the demo's client does, and what came of it.
type Step struct {
	Name string // e.g. "download"
	Dst  string // host:port the client connected to
	// Err is what the application saw; nil when it worked.
	Err error
	// Detail is what the application got, in a few words
	// ("8.0 MiB, sha256 matched").
	Detail string
	// WantRefused: the step is meant to be refused (a block rule).
	WantRefused bool
}

// OK tells whether the step came out as meant.
func (s Step) OK() bool {
	if s.WantRefused {
		return s.Err != nil && strings.Contains(s.Err.Error(), "refused")
	}
	return s.Err == nil
}

// Explain says in a sentence or two what happened to a step and why, from
// the flow shunt reported for it (its close event; nil when shunt reported
// none).
func Explain(s Step, ev *state.Event) string {
	var b strings.Builder
	if ev == nil || ev.Flow == nil {
		if s.Err != nil {
			fmt.Fprintf(&b, "%s failed: %v. shunt reported no flow to %s, so the connection never reached it (is the rule's destination captured?).", s.Name, s.Err, s.Dst)
		} else {
			fmt.Fprintf(&b, "%s worked (%s), but shunt reported no flow to %s: it did not go through shunt.", s.Name, s.Detail, s.Dst)
		}
		return b.String()
	}
	f := ev.Flow
	rule := f.Rule
	if rule == "" {
		rule = "no rule"
	}
	switch f.Action {
	case "block":
		fmt.Fprintf(&b, "%s matched rule %s, whose action is block: shunt refused the connection itself, so the application saw %q and nothing left the client.",
			f.Dst, rule, refusedText(s.Err))
	case "tunnel":
		server := f.Server
		if server == "" {
			server = "its SSH server"
		}
		fmt.Fprintf(&b, "%s matched rule %s, which tunnels it through profile %q: encrypted over SSH to %s, which opened the connection inside its network",
			f.Dst, rule, f.Profile, server)
		if s.Err == nil {
			fmt.Fprintf(&b, " (%s sent, %s received).", size(f.Sent), size(f.Received))
		} else {
			fmt.Fprintf(&b, ", but the application saw: %v", s.Err)
			if ev.Reason != "" {
				fmt.Fprintf(&b, " (shunt: %s)", ev.Reason)
			}
			b.WriteString(".")
		}
	default:
		fmt.Fprintf(&b, "%s matched rule %s, whose action is %s", f.Dst, rule, f.Action)
		if ev.Reason != "" {
			fmt.Fprintf(&b, " (%s)", ev.Reason)
		}
		b.WriteString(".")
	}
	return b.String()
}

func refusedText(err error) string {
	if err == nil {
		return "connection refused"
	}
	if strings.Contains(err.Error(), "refused") {
		return "connection refused"
	}
	return err.Error()
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// FindFlow returns the last close event of a flow to dst, or nil.
func FindFlow(events []state.Event, dst string) *state.Event {
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		if e.Event == state.EventClose && e.Flow != nil && e.Flow.Dst == dst {
			return &events[i]
		}
	}
	return nil
}
