package prompt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/state"
)

// ErrWithdrawn is what Queue.Ask returns for a question withdrawn because
// no flow waits for its connection any more.
var ErrWithdrawn = errors.New("the prompt was withdrawn: no flow waits for the connection any more")

// ErrNoPrompt is Queue.Answer's error for an id that is not pending (never
// was, or was answered or withdrawn meanwhile).
var ErrNoPrompt = errors.New("no such prompt is pending")

// Queue is the Prompter of a shunt that has nobody at a terminal (the
// daemon): each question becomes a pending prompt, listed by Pending,
// until Answer answers it (the control socket's `shunt auth`), every flow
// waiting for its connection gives up (broker.Question.Abandoned: the
// prompt is withdrawn), or the broker's prompt timeout passes. Questions
// of different connections are pending side by side.
//
// The answers go to the broker and nowhere else: not in Pending, not in
// an event, not in an error. The broker keeps what worked (passwords,
// decrypted keys) in memory for reconnects, whoever the prompter.
//
// The zero Queue is ready to use; Events, when set, must be set before
// the first Ask.
type Queue struct {
	// Events, when set, is told of each new prompt (state.EventPrompt).
	// Publish must not block.
	Events broker.Events

	mu      sync.Mutex
	seq     uint64
	pending []*pending
}

// pending is one question waiting.
type pending struct {
	info    state.Prompt
	hostKey bool
	answer  chan string // buffered: Answer never waits
}

var _ broker.Prompter = (*Queue)(nil)

// Ask implements broker.Prompter: it waits for Answer.
func (q *Queue) Ask(ctx context.Context, bq broker.Question) (string, error) {
	select {
	case <-bq.Abandoned: // nil: never
		return "", ErrWithdrawn
	default:
	}
	p := &pending{
		info: state.Prompt{
			Profile: bq.Profile, Server: bq.Server, Kind: kindName(bq.Kind),
			Message: bq.Text, Echo: bq.Echo, Created: time.Now(),
		},
		hostKey: bq.Kind == broker.HostKey,
		answer:  make(chan string, 1),
	}
	if bq.Kind == broker.HostKey {
		p.info.Fingerprint, p.info.KnownHostsLine, p.info.KnownHostsFile = bq.Fingerprint, bq.KnownHostsLine, bq.KnownHostsFile
	}
	q.mu.Lock()
	q.seq++
	p.info.ID = strconv.FormatUint(q.seq, 10)
	q.pending = append(q.pending, p)
	q.mu.Unlock()
	if ev := q.Events; ev != nil && ev.Active() {
		info := p.info
		ev.Publish(state.Event{Event: state.EventPrompt, Time: info.Created, Prompt: &info})
	}

	var err error
	select {
	case a := <-p.answer:
		return a, nil
	case <-ctx.Done():
		err = fmt.Errorf("nobody answered the prompt for %s: %w", bq.Kind, ctx.Err())
	case <-bq.Abandoned:
		err = ErrWithdrawn
	}
	if !q.remove(p) {
		// Answered just now, as it was being withdrawn: the answer
		// wins, so whoever gave it is not told a lie.
		return <-p.answer, nil
	}
	return "", err
}

// remove takes p off the list; it reports false if Answer took it first.
func (q *Queue) remove(p *pending) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.pending, p)
	if i < 0 {
		return false
	}
	q.pending = slices.Delete(q.pending, i, i+1)
	return true
}

// Pending lists the prompts waiting for an answer, oldest first.
func (q *Queue) Pending() []state.Prompt {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]state.Prompt, len(q.pending))
	for i, p := range q.pending {
		out[i] = p.info
	}
	return out
}

// Answer answers the pending prompt id. A host-key prompt takes "yes" or
// "no" (or "y", "n"; in any case), as ssh(1) does; anything else is
// refused and the prompt stays pending. The answer is never part of the
// error.
func (q *Queue) Answer(id, answer string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.IndexFunc(q.pending, func(p *pending) bool { return p.info.ID == id })
	if i < 0 {
		return fmt.Errorf("prompt %q: %w", id, ErrNoPrompt)
	}
	p := q.pending[i]
	if p.hostKey {
		switch strings.ToLower(strings.TrimSpace(answer)) {
		case "yes", "y":
			answer = "yes"
		case "no", "n":
			answer = "no"
		default:
			return fmt.Errorf("prompt %q asks whether to accept a host key: answer yes or no", id)
		}
	}
	q.pending = slices.Delete(q.pending, i, i+1)
	p.answer <- answer
	return nil
}

// kindName is the state name of a question's kind.
func kindName(k broker.QuestionKind) string {
	switch k {
	case broker.Passphrase:
		return state.PromptPassphrase
	case broker.Password:
		return state.PromptPassword
	case broker.Challenge:
		return state.PromptChallenge
	case broker.HostKey:
		return state.PromptHostKey
	}
	return k.String()
}
