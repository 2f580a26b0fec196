// Package prompttest provides a Prompter double for tests of what runs the
// broker: it answers from a table or a function and records the questions.
// (The broker's own tests cannot import it: it imports broker.)
package prompttest

import (
	"context"
	"fmt"
	"sync"

	"github.com/shunt-dev/shunt/broker"
)

// Prompter answers the broker's questions. Its zero value refuses every
// question, as a prompter with nobody to ask does.
type Prompter struct {
	// Answers holds the answer to each kind of question; a kind it lacks
	// is refused.
	Answers map[broker.QuestionKind]string
	// Answer, when set, answers in place of Answers.
	Answer func(broker.Question) (string, error)

	mu    sync.Mutex
	asked []broker.Question
}

var _ broker.Prompter = (*Prompter)(nil)

// Ask implements broker.Prompter.
func (p *Prompter) Ask(_ context.Context, q broker.Question) (string, error) {
	p.mu.Lock()
	p.asked = append(p.asked, q)
	p.mu.Unlock()
	if p.Answer != nil {
		return p.Answer(q)
	}
	if a, ok := p.Answers[q.Kind]; ok {
		return a, nil
	}
	return "", fmt.Errorf("prompttest: nobody answers a %v question (profile %s)", q.Kind, q.Profile)
}

// Asked are the questions so far, in order.
func (p *Prompter) Asked() []broker.Question {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]broker.Question(nil), p.asked...)
}

// Count is the number of questions of kind k so far.
func (p *Prompter) Count(k broker.QuestionKind) int {
	n := 0
	for _, q := range p.Asked() {
		if q.Kind == k {
			n++
		}
	}
	return n
}
