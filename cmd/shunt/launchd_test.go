package main

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/shunt-dev/shunt/config"
)

// readPlist reads an XML property list whose top value is a dict, into
// Go values: map[string]any, []any, string, bool, int64.
func readPlist(data []byte) (map[string]any, error) {
	d := xml.NewDecoder(strings.NewReader(string(data)))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("no <dict> in the plist: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "dict" {
			v, err := plistValue(d, se)
			if err != nil {
				return nil, err
			}
			return v.(map[string]any), nil
		}
	}
}

// plistValue reads the value that start opens, through its end.
func plistValue(d *xml.Decoder, start xml.StartElement) (any, error) {
	switch start.Name.Local {
	case "true", "false":
		if err := d.Skip(); err != nil {
			return nil, err
		}
		return start.Name.Local == "true", nil
	case "string", "key":
		var s string
		err := d.DecodeElement(&s, &start)
		return s, err
	case "integer":
		var s string
		if err := d.DecodeElement(&s, &start); err != nil {
			return nil, err
		}
		return strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	case "array", "dict":
		var items []any
		for {
			tok, err := d.Token()
			if err != nil {
				return nil, err
			}
			if _, ok := tok.(xml.EndElement); ok {
				break
			}
			if se, ok := tok.(xml.StartElement); ok {
				v, err := plistValue(d, se)
				if err != nil {
					return nil, err
				}
				items = append(items, v)
			}
		}
		if start.Name.Local == "array" {
			return items, nil
		}
		m := map[string]any{}
		if len(items)%2 != 0 {
			return nil, errors.New("a dict with a key but no value")
		}
		for i := 0; i < len(items); i += 2 {
			k, ok := items[i].(string)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a string", items[i])
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("dict key %q twice", k)
			}
			m[k] = items[i+1]
		}
		return m, nil
	}
	return nil, fmt.Errorf("plist element <%s> is not one this test knows", start.Name.Local)
}

// TestLaunchdPlist checks dist/launchd's daemon description: the keys
// launchd needs, and arguments that shunt daemon's own flag set (the one
// its --help prints) accepts and reads as the files installed.
func TestLaunchdPlist(t *testing.T) {
	data, err := os.ReadFile("../../dist/launchd/dev.shunt.daemon.plist")
	if err != nil {
		t.Fatal(err)
	}
	p, err := readPlist(data)
	if err != nil {
		t.Fatal(err)
	}
	if p["Label"] != "dev.shunt.daemon" {
		t.Errorf("Label %v, want dev.shunt.daemon (the file's name)", p["Label"])
	}
	if p["RunAtLoad"] != true {
		t.Errorf("RunAtLoad %v, want true", p["RunAtLoad"])
	}
	if ka, ok := p["KeepAlive"].(map[string]any); !ok || ka["SuccessfulExit"] != false {
		t.Errorf("KeepAlive %v, want SuccessfulExit false (start again after a failure only)", p["KeepAlive"])
	}
	if p["StandardErrorPath"] == nil || p["StandardErrorPath"] == "" {
		t.Error("no StandardErrorPath: shunt logs to stderr, which launchd would drop")
	}
	if to, ok := p["ExitTimeOut"].(int64); !ok || to <= 5 {
		t.Errorf("ExitTimeOut %v, want more than shutdown_grace's 5 s", p["ExitTimeOut"])
	}

	raw, _ := p["ProgramArguments"].([]any)
	var args []string
	for _, a := range raw {
		s, ok := a.(string)
		if !ok {
			t.Fatalf("ProgramArguments holds %v, not a string", a)
		}
		args = append(args, s)
	}
	if len(args) < 2 || args[0] != "/usr/local/bin/shunt" || args[1] != "daemon" {
		t.Fatalf("ProgramArguments %q, want /usr/local/bin/shunt daemon ...", args)
	}
	var daemon *command
	for _, c := range commands() {
		if strings.HasPrefix(c.Use, "daemon ") {
			daemon = &c
		}
	}
	if daemon == nil {
		t.Fatal("no daemon command")
	}
	fs := commandFlags(*daemon)
	if fs == nil {
		t.Fatal("shunt daemon has no flags")
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args[2:]); err != nil {
		t.Fatalf("shunt daemon refuses the plist's arguments %q: %v", args[2:], err)
	}
	if fs.NArg() != 0 {
		t.Errorf("shunt daemon takes no arguments, the plist gives %q", fs.Args())
	}
	if g := fs.Lookup("global"); g == nil || g.Value.String() != config.GlobalFile {
		t.Errorf("--global is %v, want %s, the file the README installs", g, config.GlobalFile)
	}
}
