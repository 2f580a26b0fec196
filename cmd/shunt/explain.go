package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/router"
)

// explanation is what `shunt explain --json` prints.
type explanation struct {
	Layers   []config.Layer `json:"layers"`
	Notes    []string       `json:"notes,omitempty"`
	Flow     explainedFlow  `json:"flow"`
	Steps    []router.Step  `json:"steps"`
	Decision struct {
		Index   int    `json:"index"` // 1-based; 0 when no rule matched
		Rule    string `json:"rule,omitempty"`
		Action  string `json:"action"`
		Why     string `json:"why"`
		Profile string `json:"profile,omitempty"`
		Server  string `json:"server,omitempty"`
		Route   string `json:"route,omitempty"`
	} `json:"decision"`
}

type explainedFlow struct {
	Destination string   `json:"destination"`
	Address     string   `json:"address,omitempty"`
	Port        uint16   `json:"port"`
	Names       []string `json:"names,omitempty"`
	Application string   `json:"application,omitempty"`
	UID         *uint32  `json:"uid,omitempty"`
}

func cmdExplain(args []string, stdout, stderr io.Writer) int {
	var app, usr string
	var asJSON bool
	cf, rest, ok := parseConfigFlags("explain", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&app, "app", "", "the application `path` (or name) making the connection")
		fs.StringVar(&usr, "user", "", "the `user` (name or uid) making the connection")
		fs.BoolVar(&asJSON, "json", false, "print the explanation as JSON")
	})
	if !ok || len(rest) != 1 {
		fmt.Fprintln(stderr, "usage: shunt explain [--config FILE]... [--app PATH] [--user USER] [--json] DEST[:PORT]")
		return 2
	}
	cfg, err := cf.load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	f, ef, err := explainFlow(rest[0], app, usr, cfg.Hosts())
	if err != nil {
		fmt.Fprintln(stderr, "shunt explain:", err)
		return 2
	}
	rs := router.Compile(cfg.RouterRules(), cfg.AlwaysDirectApplications...)
	d, steps := rs.Explain(f)
	var e explanation
	e.Layers, e.Notes, e.Flow, e.Steps = cfg.Layers, cfg.Notes, ef, steps
	e.Decision.Action, e.Decision.Why = d.Action.String(), d.Why
	if d.Rule != nil {
		e.Decision.Index, e.Decision.Rule = d.Index+1, d.Rule.Label(d.Index)
		if d.Action == router.Tunnel {
			p, _ := cfg.Profile(d.Rule.Profile)
			host := strings.Join(p.Host, " or ")
			if d.Rule.HostFromApplication {
				host = ef.Address + " (the destination itself)"
			}
			e.Decision.Profile = p.Name
			e.Decision.Server = fmt.Sprintf("%s@%s port %d", p.User, host, p.Port)
			switch {
			case p.Jump != "":
				e.Decision.Route = "through jump profile " + p.Jump
			case p.Proxy != "":
				e.Decision.Route = "through proxy " + redact(p.Proxy)
			default:
				e.Decision.Route = "direct, or as proxy_rules say"
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(e)
		return 0
	}
	printExplanation(stdout, &e)
	return 0
}

// explainFlow builds the flow to decide from the command line. Like the
// data path, it knows a destination's names only from resolving the host
// names the rules name (hosts): a name typed here counts only if it is one
// of them.
func explainFlow(dest, app, usr string, hosts []string) (router.Flow, explainedFlow, error) {
	ef := explainedFlow{Destination: dest}
	host, portStr, err := net.SplitHostPort(dest)
	if err != nil {
		host, portStr = strings.Trim(dest, "[]"), ""
	}
	var f router.Flow
	var port uint64
	if portStr != "" {
		if port, err = strconv.ParseUint(portStr, 10, 16); err != nil {
			return f, ef, fmt.Errorf("bad port in %q", dest)
		}
	}
	ef.Port = uint16(port)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr, err := netip.ParseAddr(host)
	if err != nil {
		if addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host); err == nil && len(addrs) > 0 {
			addr = addrs[0].Unmap()
		}
		if slices.Contains(hosts, strings.ToLower(strings.TrimSuffix(host, "."))) {
			f.Names = append(f.Names, strings.ToLower(strings.TrimSuffix(host, ".")))
		}
	}
	if addr.IsValid() {
		ef.Address = addr.String()
		for _, h := range hosts {
			if slices.Contains(f.Names, h) {
				continue
			}
			if addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h); err == nil && slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.Unmap() == addr.Unmap() }) {
				f.Names = append(f.Names, h)
			}
		}
	}
	ef.Names = f.Names
	f.Dst = netip.AddrPortFrom(addr, uint16(port))
	if app != "" || usr != "" {
		o := &router.Owner{}
		if app != "" {
			o.Exe, o.Name = app, filepath.Base(app)
			ef.Application = app
		}
		if usr != "" {
			uid, err := strconv.ParseUint(usr, 10, 32)
			if err != nil {
				u, lerr := user.Lookup(usr)
				if lerr != nil {
					return f, ef, fmt.Errorf("unknown user %q", usr)
				}
				uid, _ = strconv.ParseUint(u.Uid, 10, 32)
			}
			id := uint32(uid)
			o.UID, ef.UID = id, &id
		}
		f.Owner = o
	}
	return f, ef, nil
}

func printExplanation(w io.Writer, e *explanation) {
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
	f := e.Flow
	what := f.Destination
	if len(f.Names) > 0 && f.Address != "" {
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
	fmt.Fprintf(w, "\nflow to %s\n\n", what)
	for _, s := range e.Steps {
		verdict := "no   "
		if s.Matched {
			verdict = "MATCH"
		}
		fmt.Fprintf(w, "  %s  rule %-20s %s\n", verdict, s.Label, s.Why)
	}
	d := e.Decision
	fmt.Fprintln(w)
	switch {
	case d.Index == 0:
		fmt.Fprintf(w, "%s: %s\n", d.Action, d.Why)
	case d.Action == "tunnel":
		fmt.Fprintf(w, "tunnel (rule %s) through profile %s: SSH to %s, %s\n", d.Rule, d.Profile, d.Server, d.Route)
	case d.Action == "block":
		fmt.Fprintf(w, "block (rule %s): the application sees a refused connection\n", d.Rule)
	default:
		fmt.Fprintf(w, "direct (rule %s)\n", d.Rule)
	}
}

// redact hides a proxy URL's password.
func redact(proxy string) string {
	u, err := url.Parse(proxy)
	if err != nil {
		return "(a malformed proxy URL)"
	}
	return u.Redacted()
}
