package main

import (
	"context"
	"errors"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/explain"
)

var (
	_ control.Explainer    = (*served)(nil)
	_ control.ConfigViewer = (*served)(nil)
	_ control.ConfigEditor = (*served)(nil)
)

// errNoConfig: this shunt was not given its files (a test's).
var errNoConfig = errors.New("this shunt does not know the files of its configuration")

// Explain decides a flow by the plan in force, as shunt explain does by
// the files: the same function (explain.New) answers both.
func (s *served) Explain(_ context.Context, req control.ExplainRequest) (any, error) {
	l := s.loaded.Load()
	if s.eng == nil || l == nil {
		return nil, errNoConfig
	}
	c := explain.Config{Plan: s.eng.Plan(), Layers: l.Layers, Notes: l.Notes}
	if req.From != "" {
		c.Locals = engine.ThisHost(s.log)
	}
	return explain.New(c, explain.Request(req))
}

// ConfigView is the configuration in force as its files say it, with the
// rules an earlier one shadows.
func (s *served) ConfigView() (any, error) {
	l := s.loaded.Load()
	if s.eng == nil || l == nil {
		return nil, errNoConfig
	}
	v, err := l.View()
	if err != nil {
		return nil, err
	}
	v.Shadowed = append(v.Shadowed, shadowedOf(s.eng.Plan())...)
	return v, nil
}

func shadowedOf(p *engine.Plan) []config.Shadowed {
	var out []config.Shadowed
	for _, sh := range p.Ruleset.Shadowed() {
		out = append(out, config.Shadowed{Index: sh.Index, By: sh.By, Message: sh.String()})
	}
	return out
}

// ConfigFiles are the files of the configuration in force, for the web
// console's edits (nil: this shunt was not given them).
func (s *served) ConfigFiles() (config.Layers, *config.Loaded) {
	if s.eng == nil {
		return s.layers, nil
	}
	return s.layers, s.loaded.Load()
}

// CheckConfig checks the files l reads as shunt check does: the files
// (LoadLayers), then the plan made of them (engine.Convert), with the
// rules an earlier one shadows.
func (s *served) CheckConfig(l config.Layers) (*config.Loaded, []config.Shadowed, error) {
	return checkLayers(l)
}

// checkLayers is shunt check's judgement of the files l reads.
func checkLayers(l config.Layers) (*config.Loaded, []config.Shadowed, error) {
	loaded, err := config.LoadLayers(l)
	if err != nil {
		return nil, nil, err
	}
	plan, err := engine.Convert(loaded.Config)
	if err != nil {
		return loaded, nil, err
	}
	return loaded, shadowedOf(plan), nil
}
