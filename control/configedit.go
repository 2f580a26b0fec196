package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/config/edit"
)

// ConfigEditor is a Backend whose configuration the web console checks
// and saves (POST /v1/config/check, PUT /v1/config/rules, PUT and DELETE
// /v1/config/profiles/{name}). A Backend without it answers 501 there.
type ConfigEditor interface {
	// ConfigFiles are the layers the configuration in force was read
	// from, as LoadLayers reads them again (with their options), and what
	// they gave; a nil Loaded means they are not known.
	ConfigFiles() (config.Layers, *config.Loaded)
	// CheckConfig checks the configuration that l reads as shunt check
	// does, writing nothing: the error holds every problem (joined, each
	// a *config.Error where it has a file and line), the Loaded (nil
	// when there were errors) its Problems and Notes, and shadowed the
	// rules an earlier one covers.
	CheckConfig(l config.Layers) (loaded *config.Loaded, shadowed []config.Shadowed, err error)
}

// ConfigEdit is POST /v1/config/check's body: the rules (the whole new
// list), a profile to add or replace, or a profile to delete, and the
// version of GET /v1/config the edit was made on.
type ConfigEdit struct {
	// Rules is the new list of rules; nil leaves them alone.
	Rules *[]RuleItem `json:"rules,omitempty"`
	// Profile is added, or replaces the profile named OldName (its own
	// name when OldName is empty).
	Profile       map[string]any `json:"profile,omitempty"`
	OldName       string         `json:"old_name,omitempty"`
	DeleteProfile string         `json:"delete_profile,omitempty"`
	// Version is GET /v1/config's: when set, the edit is refused (409)
	// if a file of the configuration changed since.
	Version string `json:"version,omitempty"`
}

// RuleItem is one rule of the new list: {"keep": i}, the rule at index i
// of GET /v1/config's rules.items unchanged (its bytes and comments kept);
// {"rule": {...}}, a new rule; or both, rule i edited: the fields it keeps
// are kept as written, with their comments.
type RuleItem struct {
	Keep *int           `json:"keep,omitempty"`
	Rule map[string]any `json:"rule,omitempty"`
}

// ConfigCheck is the answer of a check or a save.
type ConfigCheck struct {
	OK bool `json:"ok"`
	// Error says in one line why a save was refused (422).
	Error    string            `json:"error,omitempty"`
	Errors   []ConfigProblem   `json:"errors"`
	Warnings []ConfigProblem   `json:"warnings"`
	Notes    []string          `json:"notes"`
	Shadowed []config.Shadowed `json:"shadowed"`
	// File is the file edited, YAML its content as it would be (or was)
	// written, but for the passwords of URLs, shown as config.Redacted
	// (the lines are the file's).
	File string `json:"file"`
	YAML string `json:"yaml"`
	// Saved: the file was written and the configuration reloaded.
	Saved bool `json:"saved"`
	// Version is the files' version the edit was checked on, and after a
	// save the one they have now: the next edit's.
	Version string `json:"version"`

	// out is the file's new content, as it is written.
	out []byte
}

// ConfigProblem is an error or a warning at a place in a file.
type ConfigProblem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

// maxConfigEdit bounds a check's or a save's body.
const maxConfigEdit = 1 << 20

// httpError is a request refused with a status.
type httpError struct {
	code int
	msg  string
	// whyNot: a part the console may not edit (403).
	whyNot string
	// version is the files' version now (409).
	version string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) *httpError {
	return &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) checkConfig(w http.ResponseWriter, r *http.Request) {
	var e ConfigEdit
	if err := decodeBody(w, r, &e); err != nil {
		writeError(w, http.StatusBadRequest, `the body must be one JSON object, {"rules": [...]} and/or {"profile": {...}, "old_name": "..."} or {"delete_profile": "..."}, with "version": GET /v1/config's: `+err.Error())
		return
	}
	s.editConfig(w, r, e, false)
}

func (s *Server) putRules(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Rules   *[]RuleItem `json:"rules"`
		Version string      `json:"version"`
	}
	if err := decodeBody(w, r, &body); err != nil || body.Rules == nil {
		msg := "no rules"
		if err != nil {
			msg = err.Error()
		}
		writeError(w, http.StatusBadRequest, `the body must be one JSON object, {"rules": [{"keep": 0}, {"rule": {...}}, ...], "version": "..."}: `+msg)
		return
	}
	s.editConfig(w, r, ConfigEdit{Rules: body.Rules, Version: body.Version}, true)
}

// configProfile serves PUT and DELETE /v1/config/profiles/{name}; the
// name is read from the escaped path, as /v1/profiles/'s are.
func (s *Server) configProfile(w http.ResponseWriter, r *http.Request) {
	esc, _ := strings.CutPrefix(r.URL.EscapedPath(), "/v1/config/profiles/")
	name, err := url.PathUnescape(esc)
	if err != nil || name == "" || strings.Contains(esc, "/") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s (this shunt serves /v1/config/profiles/NAME, the name escaped)", r.URL.Path))
		return
	}
	var body map[string]any
	switch r.Method {
	case http.MethodPut, http.MethodDelete:
	default:
		w.Header().Set("Allow", "PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s /v1/config/profiles/{name}: use PUT or DELETE", r.Method))
		return
	}
	if err := decodeBody(w, r, &body); err != nil && !(r.Method == http.MethodDelete && errors.Is(err, io.EOF)) {
		writeError(w, http.StatusBadRequest, "the body must be one JSON object, the profile (with \"version\": GET /v1/config's): "+err.Error())
		return
	}
	e := ConfigEdit{}
	if v, ok := body["version"]; ok {
		vs, ok := v.(string)
		if !ok {
			writeError(w, http.StatusBadRequest, `"version" must be GET /v1/config's version, a string`)
			return
		}
		e.Version = vs
		delete(body, "version")
	}
	if r.Method == http.MethodDelete {
		if len(body) > 0 {
			writeError(w, http.StatusBadRequest, `DELETE /v1/config/profiles/{name} takes {} or {"version": "..."}`)
			return
		}
		e.DeleteProfile = name
	} else {
		if body == nil {
			body = map[string]any{}
		}
		if _, ok := body["name"]; !ok {
			body["name"] = name
		}
		e.Profile, e.OldName = body, name
	}
	s.editConfig(w, r, e, true)
}

// decodeBody reads one JSON object; numbers stay json.Number, so that a
// port is written as it was sent.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxConfigEdit))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

// editConfig checks the edit e with the edited file in place of the one
// on disk and answers it; save writes it (when it is ok) and reloads.
func (s *Server) editConfig(w http.ResponseWriter, r *http.Request, e ConfigEdit, save bool) {
	ed, ok := s.backend.(ConfigEditor)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this shunt does not edit its configuration here: edit its files, then shunt reload")
		return
	}
	layers, loaded := ed.ConfigFiles()
	if loaded == nil {
		writeError(w, http.StatusNotImplemented, "this shunt does not know the files of its configuration")
		return
	}
	log := s.logFor(r)
	if save {
		// One save at a time: each is checked against the files the
		// one before wrote.
		s.configMu.Lock()
		defer s.configMu.Unlock()
	}
	res, old, err := s.applyEdit(ed, layers, loaded, e)
	if err != nil {
		writeEditError(w, err)
		return
	}
	if !save {
		writeJSON(w, http.StatusOK, res)
		return
	}
	if !res.OK {
		res.Error = fmt.Sprintf("%s is not written: the edit has %d error(s): %s", res.File, len(res.Errors), res.Errors[0].String())
		writeJSON(w, http.StatusUnprocessableEntity, res)
		return
	}
	// Someone may have written the file since it was read.
	now, err := os.ReadFile(res.File)
	if (err == nil) != (old != nil) || !bytes.Equal(now, old) {
		writeEditError(w, &httpError{code: http.StatusConflict, msg: fmt.Sprintf("%s changed on disk while the edit was checked: nothing is written; load the configuration again and redo the edit", res.File)})
		return
	}
	if err := writeFileAtomic(res.File, res.out); err != nil {
		log.WithError(err).Error("control socket: writing the configuration failed")
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("writing %s: %v (the file is as it was)", res.File, err))
		return
	}
	log.WithField("file", res.File).Info("control socket: configuration saved; reloading")
	// The page may go; the reload is not cut short with it.
	if err := s.backend.Reload(context.WithoutCancel(r.Context()), ReloadOptions{}); err != nil {
		// Checked just now, so this is rare (a file named changed):
		// the old file goes back, and the old configuration stays.
		var restore error
		if old == nil {
			restore = os.Remove(res.File)
		} else {
			restore = writeFileAtomic(res.File, old)
		}
		res.OK, res.Errors = false, problemsOf(err)
		res.Error = "the reload refused the saved file, so the old one is back in place: " + strings.Join(problemLines(err), "; ")
		if restore != nil {
			res.Error = fmt.Sprintf("the reload refused the saved file, and putting the old one back failed (%v): fix %s by hand: %s", restore, res.File, strings.Join(problemLines(err), "; "))
		}
		log.Warn("control socket: " + res.Error)
		writeJSON(w, http.StatusUnprocessableEntity, res)
		return
	}
	res.Saved = true
	if f, err := config.ReadFiles(loaded.Layers); err == nil {
		res.Version = f.Version
	}
	writeJSON(w, http.StatusOK, res)
}

func writeEditError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	body := map[string]any{"error": he.msg}
	if he.whyNot != "" {
		body["why_not"] = he.whyNot
	}
	if he.version != "" {
		body["version"] = he.version
	}
	writeJSON(w, he.code, body)
}

// applyEdit makes the edit in memory and checks the configuration with
// it. old is the edited file's content before (nil: it does not exist).
func (s *Server) applyEdit(ed ConfigEditor, layers config.Layers, loaded *config.Loaded, e ConfigEdit) (*ConfigCheck, []byte, error) {
	files, err := config.ReadFiles(loaded.Layers)
	if err != nil {
		return nil, nil, err
	}
	if e.Version != "" && e.Version != files.Version {
		return nil, nil, &httpError{code: http.StatusConflict, version: files.Version,
			msg: "the configuration's files changed since the page read them (edited by hand, or saved from another page): nothing is written; load the configuration again and redo the edit"}
	}
	view, err := loaded.ViewOf(files)
	if err != nil {
		return nil, nil, &httpError{code: http.StatusConflict, version: files.Version, msg: fmt.Sprintf("the files cannot be edited as they are now (%v): fix them by hand", err)}
	}
	res := &ConfigCheck{Errors: []ConfigProblem{}, Warnings: []ConfigProblem{}, Notes: []string{}, Shadowed: []config.Shadowed{}, Version: files.Version}
	var doc *edit.Doc
	open := func(path string) (*edit.Doc, error) {
		if doc != nil && res.File != path {
			return nil, badRequest("the rules are in %s and the profile in %s: check and save them one at a time", res.File, path)
		}
		if doc != nil {
			return doc, nil
		}
		d, err := edit.Parse(path, files.Data[path])
		if err != nil {
			return nil, err
		}
		doc, res.File = d, path
		return doc, nil
	}
	editErr := func() error {
		if e.Rules != nil {
			if !view.Rules.Editable {
				return &httpError{code: http.StatusForbidden, msg: view.Rules.WhyNot, whyNot: view.Rules.WhyNot}
			}
			d, err := open(view.Rules.File)
			if err != nil {
				return err
			}
			if err := editRules(d, *e.Rules); err != nil {
				return err
			}
		}
		if e.Profile != nil || e.DeleteProfile != "" {
			if e.Profile != nil && e.DeleteProfile != "" {
				return badRequest("give a profile to add or replace, or one to delete, not both")
			}
			if err := editProfile(view, open, e); err != nil {
				return err
			}
		}
		if doc == nil {
			return badRequest(`nothing to check: give "rules", "profile" or "delete_profile"`)
		}
		return nil
	}()
	var he *httpError
	switch {
	case errors.As(editErr, &he):
		return nil, nil, he
	case editErr != nil:
		// The edit cannot be made in place (config/edit's errors name
		// the file and line): a problem of the edit.
		res.Errors = problemsOf(editErr)
		if res.File != "" {
			res.YAML = redactURLs(string(files.Data[res.File]))
		}
		return res, files.Data[res.File], nil
	}
	out := doc.Bytes()
	res.out, res.YAML = out, redactURLs(string(out))
	l := layers
	l.Contents = map[string][]byte{res.File: out}
	checked, shadowed, err := ed.CheckConfig(l)
	if err != nil {
		res.Errors = problemsOf(err)
	}
	if checked != nil {
		for _, p := range checked.Problems {
			cp := ConfigProblem{File: p.File, Line: p.Line, Message: p.Msg}
			if p.Fatal {
				res.Errors = append(res.Errors, cp)
			} else {
				res.Warnings = append(res.Warnings, cp)
			}
		}
		res.Notes = append(res.Notes, checked.Notes...)
	}
	res.Shadowed = append(res.Shadowed, shadowed...)
	res.OK = len(res.Errors) == 0
	old, ok := files.Data[res.File]
	if !ok {
		old = nil
	}
	return res, old, nil
}

// editRules makes the file's rules the items, in order.
func editRules(doc *edit.Doc, items []RuleItem) error {
	n, err := doc.Len("rules")
	if err != nil {
		return err
	}
	kept := map[int]bool{}
	var out []edit.Item
	for j, it := range items {
		var node *yaml.Node
		if it.Rule != nil {
			var err error
			if node, err = itemNode(fmt.Sprintf("rule #%d", j+1), it.Rule, config.RuleKeys()); err != nil {
				return err
			}
		}
		switch {
		case it.Keep == nil && node == nil:
			return badRequest(`rule #%d: give {"keep": i} (rule i of the file, unchanged), {"rule": {...}} (a new rule) or both (rule i edited)`, j+1)
		case it.Keep != nil && (*it.Keep < 0 || *it.Keep >= n):
			return badRequest("rule #%d: keep %d is not a rule of the file, which has %d (0 to %d)", j+1, *it.Keep, n, n-1)
		case it.Keep != nil && kept[*it.Keep]:
			return badRequest("rule #%d: rule %d of the file is kept twice: copy it as a new rule instead", j+1, *it.Keep)
		case it.Keep != nil && node != nil:
			kept[*it.Keep] = true
			out = append(out, edit.Replace(*it.Keep, node))
		case it.Keep != nil:
			kept[*it.Keep] = true
			out = append(out, edit.Keep(*it.Keep))
		default:
			out = append(out, edit.New(node))
		}
	}
	return doc.SetSequence("rules", out)
}

// editProfile adds, replaces or deletes a profile. An existing profile is
// edited in the file it comes from (the global file's are not edited); a
// new one goes to the file that holds the rules (or would hold a first
// rule), where the rules that name it are: the user's or the --config
// file whose rules are in force; when the global file owns the rules, to
// the last file read that is not the global one.
func editProfile(view *config.View, open func(string) (*edit.Doc, error), e ConfigEdit) error {
	find := func(name string) *config.ProfileView {
		for i, p := range view.Profiles.Items {
			if p.Profile["name"] == name {
				return &view.Profiles.Items[i]
			}
		}
		return nil
	}
	forbidden := func(why string) error {
		return &httpError{code: http.StatusForbidden, msg: why, whyNot: why}
	}
	if e.DeleteProfile != "" {
		pv := find(e.DeleteProfile)
		switch {
		case pv == nil:
			return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("no profile %q in the configuration's files", e.DeleteProfile)}
		case !pv.Editable:
			return forbidden(pv.WhyNot)
		}
		doc, err := open(pv.File)
		if err != nil {
			return err
		}
		return doc.DeleteMapItem("profiles", "name", e.DeleteProfile)
	}
	name, _ := e.Profile["name"].(string)
	if name == "" {
		return badRequest("the profile needs a name (a string)")
	}
	target := e.OldName
	if target == "" {
		target = name
	}
	pv := find(target)
	var file string
	switch {
	case pv != nil && !pv.Editable:
		return forbidden(pv.WhyNot)
	case pv != nil:
		file = pv.File
	case e.OldName != "" && e.OldName != name:
		return &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("no profile %q to replace with %q", e.OldName, name)}
	case view.Rules.Editable:
		file = view.Rules.File
	default:
		for _, ly := range view.Layers {
			if ly.Found && ly.Role != "global" {
				file = ly.Path
			}
		}
		if file == "" {
			return forbidden("a new profile goes to a file of your own, and shunt reads none: " + view.Rules.WhyNot)
		}
	}
	if err := noNewSecret(name, e.Profile, pv); err != nil {
		return err
	}
	node, err := itemNode(fmt.Sprintf("profile %q", name), e.Profile, config.ProfileKeys())
	if err != nil {
		return err
	}
	doc, err := open(file)
	if err != nil {
		return err
	}
	return doc.SetMapItem("profiles", "name", target, node)
}

// noNewSecret refuses a proxy URL with a password that the file does not
// hold already: the console never writes a secret. The view hides the
// file's (config.Redacted); sent back unchanged, it is put back.
func noNewSecret(name string, p map[string]any, old *config.ProfileView) error {
	if old != nil && old.Unredact(p) {
		return nil
	}
	proxy, _ := p["proxy"].(string)
	u, err := url.Parse(proxy)
	if err != nil || u.User == nil {
		return nil
	}
	if _, has := u.User.Password(); !has {
		return nil
	}
	return badRequest("profile %q: the proxy URL holds a password, and the console writes no secrets into the configuration: write the URL without it (shunt asks for the password), or put it in the file by hand", name)
}

// itemNode is a rule's or a profile's JSON object as a YAML mapping: its
// keys in keys' order (docs/config.md's), lists of scalars in flow style,
// a null value left out. An unknown key, or a secret, is refused.
func itemNode(what string, m map[string]any, keys []string) (*yaml.Node, error) {
	var unknown []string
	for k := range m {
		switch {
		case slices.Contains(keys, k):
		case k == "password" || k == "passphrase":
			return nil, badRequest("%s: a %s never goes in the configuration file, and the console sends none: shunt asks for it when a tunnel first needs it", what, k)
		default:
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		msg := fmt.Sprintf("%s: unknown key %q", what, unknown[0])
		if c := config.Closest(unknown[0], keys); c != "" {
			msg += fmt.Sprintf(": did you mean %q?", c)
		} else {
			msg += ": the keys are " + strings.Join(keys, ", ")
		}
		return nil, badRequest("%s", msg)
	}
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, k := range keys {
		v, ok := m[k]
		if !ok || v == nil {
			continue
		}
		val := new(yaml.Node)
		if err := val.Encode(plainJSON(v)); err != nil {
			return nil, badRequest("%s: %s: %v", what, k, err)
		}
		flowScalars(val)
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, val)
	}
	return n, nil
}

// plainJSON turns json.Number into an int64 (or a float64).
func plainJSON(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = plainJSON(x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = plainJSON(x)
		}
		return out
	}
	return v
}

// flowScalars writes a list of scalars in flow style ([a, b]), as the
// example files do.
func flowScalars(n *yaml.Node) {
	if n.Kind == yaml.SequenceNode && len(n.Content) > 0 && !slices.ContainsFunc(n.Content, func(c *yaml.Node) bool {
		return c.Kind != yaml.ScalarNode || strings.Contains(c.Value, "\n")
	}) {
		n.Style |= yaml.FlowStyle
	}
	for _, c := range n.Content {
		flowScalars(c)
	}
}

// problemsOf are an error's problems, each with its file and line when it
// has them (*config.Error, *edit.Error).
func problemsOf(err error) []ConfigProblem {
	var out []ConfigProblem
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if ce, ok := errors.AsType[*config.Error](err); ok {
			out = append(out, ConfigProblem{File: ce.File, Line: ce.Line, Message: ce.Msg})
			return
		}
		if ee, ok := errors.AsType[*edit.Error](err); ok {
			out = append(out, ConfigProblem{File: ee.File, Line: ee.Line, Message: ee.Msg})
			return
		}
		for _, l := range problemLines(err) {
			out = append(out, ConfigProblem{Message: l})
		}
	}
	walk(err)
	return out
}

// String is "file:line: message".
func (p ConfigProblem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
	}
	return p.File + ": " + p.Message
}

// urlPassword is the password of a URL's user information, as written.
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^\s:@/]*:)[^\s@/]+@`)

// redactURLs hides the passwords of the URLs in text (proxy URLs), as the
// view does.
func redactURLs(text string) string {
	return urlPassword.ReplaceAllString(text, "${1}"+config.Redacted+"@")
}
