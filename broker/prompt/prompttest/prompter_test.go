package prompttest

import (
	"context"
	"testing"

	"github.com/shunt-dev/shunt/broker"
)

func TestPrompter(t *testing.T) {
	p := &Prompter{Answers: map[broker.QuestionKind]string{broker.Password: "hunter2"}}
	if a, err := p.Ask(context.Background(), broker.Question{Kind: broker.Password, Profile: "gw"}); err != nil || a != "hunter2" {
		t.Errorf("password: %q, %v", a, err)
	}
	if _, err := p.Ask(context.Background(), broker.Question{Kind: broker.HostKey, Profile: "gw"}); err == nil {
		t.Error("a question without an answer was answered")
	}
	if p.Count(broker.Password) != 1 || p.Count(broker.HostKey) != 1 || len(p.Asked()) != 2 {
		t.Errorf("asked %v", p.Asked())
	}
}
