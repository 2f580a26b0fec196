package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"

	"go.yaml.in/yaml/v3"
)

// View is the configuration as the web console edits it (GET /v1/config):
// the files read, the rules and the file that holds them, each profile and
// its file. Rules and profiles are as their files say them now, key for
// key (the YAML keys of docs/config.md, absent keys omitted), not as the
// merge and the defaults made them.
type View struct {
	Layers   []Layer      `json:"layers"`
	Rules    RulesView    `json:"rules"`
	Profiles ProfilesView `json:"profiles"`
	// Shadowed are the rules an earlier one covers (router's
	// Ruleset.Shadowed), filled in by whoever has the compiled rules.
	Shadowed []Shadowed `json:"shadowed"`
	// Version is Files.Version of the files the view was read from: an
	// edit that names it is refused once any of them changed.
	Version string `json:"version"`
}

// Files are the bytes of a configuration's files as read at one moment
// (ReadFiles), for a view and an edit that agree on what the files say.
type Files struct {
	// Data holds the files that exist, by path.
	Data map[string][]byte
	// Version is a digest of every layer's path and bytes (or absence):
	// it changes whenever one of the files does.
	Version string
}

// ReadFiles reads the layers' files, those not found at load time too
// (one may have been written since).
func ReadFiles(layers []Layer) (*Files, error) {
	f := &Files{Data: map[string][]byte{}}
	h := sha256.New()
	for _, ly := range layers {
		data, err := os.ReadFile(ly.Path)
		present := err == nil
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("reading %s again: %w", ly.Path, err)
		default:
			f.Data[ly.Path] = data
		}
		// Each field is length-prefixed: no two sets of files digest
		// alike.
		for _, b := range [][]byte{[]byte(ly.Role), []byte(ly.Path), data} {
			binary.Write(h, binary.BigEndian, uint64(len(b)))
			h.Write(b)
		}
		binary.Write(h, binary.BigEndian, present)
	}
	f.Version = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return f, nil
}

// RulesView is the rules in force and where they are written.
type RulesView struct {
	// File is the file the rules come from, or the one a first rule
	// would be written to; empty when there is none.
	File string `json:"file"`
	// Editable is false when the global file owns the rules (LoadLayers'
	// merge ignores any other file's then), WhyNot says so.
	Editable bool             `json:"editable"`
	WhyNot   string           `json:"why_not,omitempty"`
	Items    []map[string]any `json:"items"`
}

// ProfilesView is the profiles in force, each with its file.
type ProfilesView struct {
	Items []ProfileView `json:"items"`
}

// ProfileView is one profile.
type ProfileView struct {
	File     string         `json:"file"`
	Editable bool           `json:"editable"`
	WhyNot   string         `json:"why_not,omitempty"`
	Profile  map[string]any `json:"profile"`
	// proxy is the proxy URL as written, when Profile shows it with its
	// password Redacted.
	proxy string
}

// Redacted stands for the password of a proxy URL in a view: the view
// goes to a browser, and a password is not to be read there.
const Redacted = "REDACTED"

func (pv *ProfileView) redactProxy() {
	s, _ := pv.Profile["proxy"].(string)
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return
	}
	if _, ok := u.User.Password(); !ok {
		return
	}
	u.User = url.UserPassword(u.User.Username(), Redacted)
	pv.proxy, pv.Profile["proxy"] = s, u.String()
}

// Unredact puts the proxy password the view hid back into p, a profile
// sent back with the view's proxy URL unchanged, so that it is written as
// it was; it reports whether p's proxy URL is the one written.
func (pv *ProfileView) Unredact(p map[string]any) bool {
	if pv.proxy == "" {
		return p["proxy"] == pv.Profile["proxy"]
	}
	switch p["proxy"] {
	case pv.Profile["proxy"]:
		p["proxy"] = pv.proxy
		return true
	case pv.proxy:
		return true
	}
	return false
}

// Shadowed is a rule that can never match: Index and By are 0-based
// indexes into RulesView.Items, Message says it as shunt check does.
type Shadowed struct {
	Index   int    `json:"index"`
	By      int    `json:"by"`
	Message string `json:"message"`
}

// View reads the files the configuration came from again for the rules'
// and profiles' keys as written. A file that cannot be read or parsed any
// more (edited since) is an error naming it.
func (l *Loaded) View() (*View, error) {
	f, err := ReadFiles(l.Layers)
	if err != nil {
		return nil, err
	}
	return l.ViewOf(f)
}

// ViewOf is View of the files as in holds them.
func (l *Loaded) ViewOf(in *Files) (*View, error) {
	v := &View{Layers: l.Layers, Shadowed: []Shadowed{}, Version: in.Version}
	if v.Layers == nil {
		v.Layers = []Layer{}
	}
	global := ""
	for _, ly := range l.Layers {
		if ly.Role == "global" {
			global = ly.Path
		}
	}
	files := map[string]map[string][]*yaml.Node{}
	items := func(path, key string) ([]*yaml.Node, error) {
		if f, ok := files[path]; ok {
			return f[key], nil
		}
		data, ok := in.Data[path]
		if !ok {
			return nil, fmt.Errorf("reading %s again: %w", path, fs.ErrNotExist)
		}
		root, err := decodeYAML(path, data)
		if err != nil {
			return nil, err
		}
		f := map[string][]*yaml.Node{}
		if len(root.Content) > 0 && root.Content[0].Kind == yaml.MappingNode {
			top := root.Content[0]
			for i := 0; i+1 < len(top.Content); i += 2 {
				if seq := top.Content[i+1]; seq.Kind == yaml.SequenceNode {
					f[top.Content[i].Value] = seq.Content
				}
			}
		}
		files[path] = f
		return f[key], nil
	}
	asMap := func(n *yaml.Node) (map[string]any, error) {
		m := map[string]any{}
		if err := n.Decode(&m); err != nil {
			return nil, &Error{File: "", Line: n.Line, Msg: err.Error()}
		}
		return m, nil
	}

	r := &v.Rules
	r.Items = []map[string]any{}
	if len(l.Rules) > 0 {
		r.File = l.Rules[0].File
	} else {
		// No file has rules: a first one goes to the last file read,
		// which the merge lets win.
		for _, ly := range l.Layers {
			if ly.Found && ly.Path != global {
				r.File = ly.Path
			}
		}
	}
	switch {
	case r.File == "" && global != "":
		r.WhyNot = fmt.Sprintf("only the global file %s is read, and it is the administrator's: give shunt a file of your own (--config) to edit the rules in", global)
	case r.File == "":
		r.WhyNot = "no file to write the rules to"
	case r.File == global:
		r.WhyNot = fmt.Sprintf("the global file %s owns the rules: the rules of every other file are ignored", global)
	default:
		r.Editable = true
	}
	if len(l.Rules) > 0 {
		nodes, err := items(r.File, "rules")
		if err != nil {
			return nil, err
		}
		for _, n := range nodes {
			m, err := asMap(n)
			if err != nil {
				return nil, withFile(err, r.File)
			}
			r.Items = append(r.Items, m)
		}
	}

	v.Profiles.Items = []ProfileView{}
	for _, p := range l.Profiles {
		pv := ProfileView{File: p.File, Editable: p.File != "" && p.File != global}
		switch {
		case p.File == "":
			pv.WhyNot = "the profile is not written in any file"
		case p.File == global:
			pv.WhyNot = fmt.Sprintf("the global file %s holds the profile: define one of the same name in your own file to replace it", global)
		}
		var node *yaml.Node
		if p.File != "" {
			nodes, err := items(p.File, "profiles")
			if err != nil {
				return nil, err
			}
			for _, n := range nodes {
				if n.Line == p.Line {
					node = n
				}
			}
		}
		if node == nil {
			pv.Profile = map[string]any{"name": p.Name}
		} else {
			m, err := asMap(node)
			if err != nil {
				return nil, withFile(err, p.File)
			}
			pv.Profile = m
			pv.redactProxy()
		}
		v.Profiles.Items = append(v.Profiles.Items, pv)
	}
	return v, nil
}

func withFile(err error, file string) error {
	if e, ok := err.(*Error); ok {
		e.File = file
	}
	return err
}
