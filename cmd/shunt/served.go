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
	for _, sh := range s.eng.Plan().Ruleset.Shadowed() {
		v.Shadowed = append(v.Shadowed, config.Shadowed{Index: sh.Index, By: sh.By, Message: sh.String()})
	}
	return v, nil
}
