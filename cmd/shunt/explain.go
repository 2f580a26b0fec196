package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/explain"
)

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	var app, usr, from string
	var asJSON bool
	cf, rest, err := parseConfigFlags("explain", args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&app, "app", "", "the application `path` (or name) making the connection")
		fs.StringVar(&usr, "user", "", "the `user` (name or uid) making the connection")
		fs.StringVar(&from, "from", "", "the source `address` of the flow: another host's is a flow forwarded through this one (a LAN gateway's), which only rules with sources: match")
		fs.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	})
	if err != nil || len(rest) != 1 {
		return usageExit(err, stderr, "usage: shunt explain [--config FILE]... [--app PATH] [--user USER] [--from ADDR] [--json] DEST[:PORT]")
	}
	cfg, err := cf.load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	c, err := explain.FromLoaded(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "shunt explain:", err)
		return 2
	}
	if from != "" {
		c.Locals = engine.ThisHost(logrus.New())
	}
	e, err := explain.New(c, explain.Request{Destination: rest[0], Application: app, User: usr, From: from})
	if err != nil {
		fmt.Fprintln(stderr, "shunt explain:", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(e)
		return 0
	}
	printExplanation(stdout, e)
	return 0
}

func printExplanation(w io.Writer, e *explain.Explanation) {
	for _, l := range e.Layers {
		state := "read"
		if !l.Found {
			state = "absent"
		}
		fmt.Fprintf(w, "%-7s %s (%s)\n", l.Role, l.Path, state)
	}
	for _, n := range e.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, u := range e.Unresolved {
		fmt.Fprintf(w, "note: %s does not resolve (%s): until it does, no flow matches a rule by that name, and it captures nothing\n", u.Host, u.Error)
	}
	f := e.Flow
	what := f.Destination
	if _, err := netip.ParseAddr(explain.DestHost(f.Destination)); err != nil && f.Address != "" {
		what += " (" + f.Address + ")"
	}
	if f.Port == 0 {
		what += ", no port given: rules that name ports do not match"
	}
	if f.Application != "" {
		what += ", application " + f.Application
	}
	if f.UID != nil {
		what += fmt.Sprintf(", uid %d", *f.UID)
	}
	switch {
	case f.Application != "" && f.UID == nil:
		what += ", user not given: rules that name users do not match"
	case f.Application == "" && f.UID != nil:
		what += ", application not given: rules that name applications do not match"
	}
	from := ""
	switch {
	case f.Forwarded:
		from = " from " + f.Source + " (another host's address: a flow it routes through this one, which only rules with sources: covering it match)"
	case f.Source != "":
		from = " from " + f.Source + " (this host's address)"
	}
	fmt.Fprintf(w, "\nflow%s to %s\n", from, what)
	if f.DNSWhy != "" && f.DNS != "through" {
		fmt.Fprintf(w, "dns: %s\n", f.DNSWhy)
	}
	d := e.Decision
	if d.Action == "none" {
		fmt.Fprintf(w, "\nno flow: %s\n", d.Why)
		return
	}
	c := e.Capture
	if c.Captured {
		fmt.Fprintf(w, "captured: %s\n\n", c.Why)
	} else {
		fmt.Fprintf(w, "not captured: %s\n\n", c.Why)
	}
	for _, s := range e.Steps {
		verdict := "no   "
		if s.Matched {
			verdict = "MATCH"
		}
		fmt.Fprintf(w, "  %s  rule %-20s %s\n", verdict, s.Label, s.Why)
	}
	if len(e.Steps) > 0 {
		fmt.Fprintln(w)
	}
	if !c.Captured {
		fmt.Fprint(w, "normal route: not captured, so shunt does not see the flow")
		switch {
		case d.Index == 0:
		case d.Action == "direct":
			fmt.Fprintf(w, " (rule %s would send it direct too)", d.Rule)
		case strings.Contains(c.Why, "loopback"):
			fmt.Fprintf(w, "; rule %s would %s it, but loopback addresses are never captured", d.Rule, d.Action)
		default:
			fmt.Fprintf(w, "; rule %s would %s it, but matches it only by a *.domain wildcard, and wildcards capture nothing by route: add the host name or its network to a tunnel or block rule", d.Rule, d.Action)
		}
		fmt.Fprintln(w)
		return
	}
	switch {
	case d.Index == 0 && f.Forwarded:
		fmt.Fprintf(w, "refused: %s\n", d.Why)
	case d.Index == 0 && strings.HasPrefix(d.Why, "application "):
		fmt.Fprintf(w, "%s: %s\n", d.Action, d.Why)
	case d.Index == 0:
		fmt.Fprintln(w, "direct: captured, but no rule matches: shunt connects it directly, not through a tunnel")
	case d.Action == "tunnel":
		fmt.Fprintf(w, "tunnel (rule %s) through profile %s: %s\n", d.Rule, d.Profile, d.Route)
		if d.TunnelDown != "" {
			fmt.Fprintf(w, "tunnel down: %s\n", d.TunnelDown)
		}
	case d.Action == "block":
		fmt.Fprintf(w, "block (rule %s): the application sees a refused connection\n", d.Rule)
	default:
		fmt.Fprintf(w, "direct (rule %s)\n", d.Rule)
	}
	if c.Stopped != "" {
		fmt.Fprintf(w, "shunt stopped: %s\n", c.Stopped)
	}
}
