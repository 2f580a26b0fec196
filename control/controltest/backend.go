// Package controltest is a fake control.Backend, for tests of the control
// socket and of the client commands without a running shunt.
package controltest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/state"
)

var (
	_ control.Backend      = (*Backend)(nil)
	_ control.Explainer    = (*Backend)(nil)
	_ control.ConfigViewer = (*Backend)(nil)
)

// Backend is a fake running shunt: a status that tests set, and a record
// of what it was asked. It changes its status as a shunt would: a
// connected profile is Connected, a closed flow is gone (with a close
// event), an answered prompt is no longer pending.
type Backend struct {
	mu     sync.Mutex
	status state.Status
	calls  []string
	subs   map[*subscriber]bool
	down   bool

	errs    Errors
	answers map[string]string
	config  any

	// Now gives the events' times; nil means time.Now. Set it before use.
	Now func() time.Time
}

// Errors are what the methods that can fail return.
type Errors struct {
	Reload, Connect, Disconnect, Answer, Explain, Config error
}

// SetErrors sets what the methods that can fail return.
func (b *Backend) SetErrors(e Errors) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.errs = e
}

type subscriber struct {
	ch     chan state.Event
	closed bool
}

// SetStatus sets what Status returns.
func (b *Backend) SetStatus(st state.Status) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.status = st
}

// Calls are the methods called that change something, in order, as
// "reload", "down", "connect NAME", "disconnect NAME", "close ID",
// "answer ID" (never the answer).
func (b *Backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// LastCall is the last of Calls, "" when there is none.
func (b *Backend) LastCall() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) == 0 {
		return ""
	}
	return b.calls[len(b.calls)-1]
}

// Subscribers counts the subscriptions open.
func (b *Backend) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// Publish sends ev to every subscriber that has room for it.
func (b *Backend) Publish(ev state.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publish(ev)
}

func (b *Backend) publish(ev state.Event) {
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
		}
	}
}

// Status returns the status set, with copies of its lists.
func (b *Backend) Status() state.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := b.status
	st.Profiles = slices.Clone(st.Profiles)
	st.Flows = slices.Clone(st.Flows)
	st.Prompts = slices.Clone(st.Prompts)
	return st
}

// Reload records the call, as "reload" or "reload reset_removed"; it
// fails as SetErrors says.
func (b *Backend) Reload(_ context.Context, opts control.ReloadOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	call := "reload"
	if opts.ResetRemoved {
		call += " reset_removed"
	}
	b.calls = append(b.calls, call)
	return b.errs.Reload
}

// Down records the call, turns the capture off and ends every
// subscription, as a shunt that stops does.
func (b *Backend) Down() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "down")
	b.down = true
	b.status.Capture = false
	for s := range b.subs {
		b.end(s)
	}
}

func (b *Backend) end(s *subscriber) {
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
	delete(b.subs, s)
}

// Connect records the call; unless it is to fail (SetErrors), the profile is
// then Connected.
func (b *Backend) Connect(_ context.Context, profile string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "connect "+profile)
	if b.errs.Connect != nil {
		return b.errs.Connect
	}
	return b.setState(profile, state.Connected)
}

// Disconnect records the call; unless it is to fail, the profile
// is then Idle.
func (b *Backend) Disconnect(profile string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "disconnect "+profile)
	if b.errs.Disconnect != nil {
		return b.errs.Disconnect
	}
	return b.setState(profile, state.Idle)
}

func (b *Backend) setState(profile, s string) error {
	for i := range b.status.Profiles {
		if p := &b.status.Profiles[i]; p.Name == profile {
			p.State = s
			ev := *p
			b.publish(state.Event{Event: state.EventState, Time: b.now(), Profile: &ev})
			return nil
		}
	}
	return fmt.Errorf("no profile %q", profile)
}

func (b *Backend) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// CloseFlow records the call, removes the flow and announces its close.
func (b *Backend) CloseFlow(id uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprint("close ", id))
	i := slices.IndexFunc(b.status.Flows, func(f state.Flow) bool { return f.ID == id })
	if i < 0 {
		return false
	}
	f := b.status.Flows[i]
	b.status.Flows = slices.Delete(b.status.Flows, i, i+1)
	now := b.now()
	f.State = state.FlowClosed
	b.publish(state.Event{Event: state.EventClose, Time: now, Flow: &f, Reason: "reset by shunt close", Duration: now.Sub(f.Started)})
	return true
}

// Answer records the answer (AnswerFor) and the call (without the
// answer); unless it is to fail, the prompt is then no longer pending.
func (b *Backend) Answer(id, answer string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "answer "+id)
	if b.errs.Answer != nil {
		return b.errs.Answer
	}
	i := slices.IndexFunc(b.status.Prompts, func(p state.Prompt) bool { return p.ID == id })
	if i < 0 {
		return errors.New("no such prompt")
	}
	b.status.Prompts = slices.Delete(b.status.Prompts, i, i+1)
	if b.answers == nil {
		b.answers = map[string]string{}
	}
	b.answers[id] = answer
	return nil
}

// Subscribe subscribes; after Down the channel is closed at once.
func (b *Backend) Subscribe(buf int) (<-chan state.Event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &subscriber{ch: make(chan state.Event, buf)}
	if b.down {
		close(s.ch)
		return s.ch, func() {}
	}
	if b.subs == nil {
		b.subs = map[*subscriber]bool{}
	}
	b.subs[s] = true
	return s.ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.end(s)
	}
}

// AnswerFor is the answer given to prompt id.
func (b *Backend) AnswerFor(id string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	a, ok := b.answers[id]
	return a, ok
}

// Explain records the call, as "explain DEST"; unless it is to fail, it
// answers the request itself, as {"flow": {"destination": DEST, ...}}.
func (b *Backend) Explain(_ context.Context, req control.ExplainRequest) (any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, "explain "+req.Destination)
	if b.errs.Explain != nil {
		return nil, b.errs.Explain
	}
	return map[string]any{"flow": req}, nil
}

// SetConfig sets what ConfigView answers.
func (b *Backend) SetConfig(v any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.config = v
}

// ConfigView answers what SetConfig set ({} if nothing), or fails as
// SetErrors says.
func (b *Backend) ConfigView() (any, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.errs.Config != nil {
		return nil, b.errs.Config
	}
	if b.config == nil {
		return map[string]any{}, nil
	}
	return b.config, nil
}
