package prompt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/shunt-dev/shunt/broker"
	"github.com/shunt-dev/shunt/broker/brokertest"
	"github.com/shunt-dev/shunt/state"
)

// recorder is a broker.Events that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []state.Event
}

func (r *recorder) Active() bool { return true }

func (r *recorder) Publish(e state.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) of(kind string) []state.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []state.Event
	for _, e := range r.events {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) states() []string {
	var out []string
	for _, e := range r.of(state.EventState) {
		out = append(out, e.Profile.State)
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rig is a broker whose prompter is a Queue, with a password server.
type rig struct {
	srv    *brokertest.Server
	q      *Queue
	b      *broker.Broker
	rec    *recorder
	hook   *test.Hook
	target string
}

func newRig(t *testing.T, opts brokertest.Options, mod func(*broker.Profile)) *rig {
	t.Helper()
	srv := brokertest.NewWithOptions(t, opts)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, []byte(srv.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := broker.Profile{
		Name: "gw", Hosts: []string{"127.0.0.1"}, Port: srv.Port(), User: "alice",
		KnownHosts: []string{kh}, AuthMethods: []string{broker.AuthPassword},
	}
	if mod != nil {
		mod(&p)
	}
	rec := &recorder{}
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	q := &Queue{Events: rec}
	b, err := broker.New([]broker.Profile{p}, broker.Options{Prompter: q, Events: rec, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &rig{srv: srv, q: q, b: b, rec: rec, hook: hook, target: brokertest.Echo(t)}
}

// dial dials in the background; the result comes on the channel.
func (r *rig) dial(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		c, err := r.b.Dial(ctx, "gw", r.target)
		if err == nil {
			_, err = c.Write([]byte("x"))
			if err == nil {
				_, err = io.ReadFull(c, make([]byte, 1))
			}
			c.Close()
		}
		done <- err
	}()
	return done
}

// pending waits for a prompt other than those in seen.
func (r *rig) pending(t *testing.T, seen ...string) state.Prompt {
	t.Helper()
	var p state.Prompt
	waitUntil(t, "a new prompt is pending", func() bool {
		for _, x := range r.q.Pending() {
			if !slices.Contains(seen, x.ID) {
				p = x
				return true
			}
		}
		return false
	})
	return p
}

func (r *rig) status(t *testing.T) state.Profile {
	t.Helper()
	st := r.b.Status()
	if len(st) != 1 {
		t.Fatalf("status %+v", st)
	}
	return st[0]
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the dial did not return within 20 s")
		return nil
	}
}

// secretsAbsent checks that no secret is in the status, the pending
// prompts, the events or the log.
func (r *rig) secretsAbsent(t *testing.T, extra string, secrets ...string) {
	t.Helper()
	st, _ := json.Marshal(r.b.Status())
	pending, _ := json.Marshal(r.q.Pending())
	r.rec.mu.Lock()
	events, _ := json.Marshal(r.rec.events)
	r.rec.mu.Unlock()
	text := string(st) + string(pending) + string(events) + extra
	for _, e := range r.hook.AllEntries() {
		s, _ := e.String()
		text += s
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Errorf("%q appears in the status, a prompt, an event, an error or the log", s)
		}
	}
}

// A password the daemon needs is pending until answered: listed,
// announced, the profile waiting-for-auth. A wrong answer is asked again
// (as ssh asks three times); the right one connects, and is kept for the
// reconnect.
func TestQueuePasswordAnswered(t *testing.T) {
	r := newRig(t, brokertest.Options{Password: "right-pw-sekrit"}, nil)
	done := r.dial(context.Background())
	p := r.pending(t)
	want := state.Prompt{
		ID: p.ID, Profile: "gw", Server: fmt.Sprintf("127.0.0.1:%d", r.srv.Port()), Kind: state.PromptPassword,
		Message: fmt.Sprintf("alice@127.0.0.1:%d's password: ", r.srv.Port()), Echo: false, Created: p.Created,
	}
	if p != want || p.Created.IsZero() {
		t.Fatalf("pending %+v, want %+v", p, want)
	}
	if ev := r.rec.of(state.EventPrompt); len(ev) != 1 || *ev[0].Prompt != p {
		t.Fatalf("prompt events %+v", ev)
	}
	if st := r.status(t); st.State != state.WaitingForAuth {
		t.Fatalf("while pending: %+v", st)
	}

	if err := r.q.Answer(p.ID, "wrong-pw-sekrit"); err != nil {
		t.Fatal(err)
	}
	p2 := r.pending(t, p.ID)
	if p2.Kind != state.PromptPassword || r.status(t).State != state.WaitingForAuth {
		t.Fatalf("after a wrong answer: %+v, %+v", p2, r.status(t))
	}
	if err := r.q.Answer(p.ID, "late"); !errors.Is(err, ErrNoPrompt) {
		t.Fatalf("answering an answered prompt: %v", err)
	}
	if err := r.q.Answer(p2.ID, "right-pw-sekrit"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if st := r.status(t); st.State != state.Connected || len(r.q.Pending()) != 0 {
		t.Fatalf("after the right answer: %+v, pending %+v", st, r.q.Pending())
	}
	if got, want := r.rec.states(), []string{
		state.Connecting, state.WaitingForAuth, state.Connecting, state.WaitingForAuth, state.Connecting, state.Connected,
	}; !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}

	// The reconnect logs in with the password that worked, asking nothing.
	r.srv.Drop()
	waitUntil(t, "the loss is seen", func() bool { return r.status(t).State == state.Idle })
	if err := wait(t, r.dial(context.Background())); err != nil {
		t.Fatal(err)
	}
	if n := len(r.rec.of(state.EventPrompt)); n != 2 || r.status(t).Reconnects != 1 {
		t.Fatalf("%d prompts (want 2), status %+v", n, r.status(t))
	}
	r.secretsAbsent(t, "", "right-pw-sekrit", "wrong-pw-sekrit")
}

// The flow waits for the answer until its context ends, and is refused;
// the prompt is withdrawn with it, without a backoff: the next flow is
// asked again at once.
func TestQueuePromptWithdrawnWhenTheFlowGivesUp(t *testing.T) {
	r := newRig(t, brokertest.Options{Password: "right-pw-sekrit"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := r.dial(ctx)
	p := r.pending(t)
	cancel()
	err := wait(t, done)
	var se *broker.SetupError
	if !errors.As(err, &se) || !errors.Is(err, context.Canceled) {
		t.Fatalf("flow that gave up: %v, want a SetupError for its context", err)
	}
	waitUntil(t, "the prompt is withdrawn", func() bool { return len(r.q.Pending()) == 0 })
	waitUntil(t, "the attempt ends", func() bool { return r.status(t).State == state.Idle })
	if st := r.status(t); !strings.Contains(st.Error, "withdrawn") {
		t.Fatalf("after the withdrawal: %+v", st)
	}
	if err := r.q.Answer(p.ID, "right-pw-sekrit"); !errors.Is(err, ErrNoPrompt) {
		t.Fatalf("answering a withdrawn prompt: %v", err)
	}
	if slices.Contains(r.rec.states(), state.Backoff) {
		t.Fatalf("a withdrawn prompt caused a backoff: %v", r.rec.states())
	}

	done = r.dial(context.Background())
	p2 := r.pending(t, p.ID)
	if err := r.q.Answer(p2.ID, "right-pw-sekrit"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	r.secretsAbsent(t, err.Error(), "right-pw-sekrit")
}

// A host key is accepted by yes, refused by no; anything else is refused
// and the prompt stays.
func TestQueueHostKey(t *testing.T) {
	var kh string
	r := newRig(t, brokertest.Options{Password: "pw"}, func(p *broker.Profile) {
		kh = filepath.Join(filepath.Dir(p.KnownHosts[0]), "empty_known_hosts")
		p.KnownHosts = []string{kh}
		p.HostKeyPolicy = broker.Ask
	})
	done := r.dial(context.Background())
	p := r.pending(t)
	if p.Kind != state.PromptHostKey || !p.Echo || !strings.Contains(p.Message, "Are you sure you want to continue connecting (yes/no)?") {
		t.Fatalf("host-key prompt %+v", p)
	}
	err := r.q.Answer(p.ID, "maybe-sekrit")
	if err == nil || !strings.Contains(err.Error(), "answer yes or no") || strings.Contains(err.Error(), "maybe-sekrit") {
		t.Fatalf("answer maybe: %v", err)
	}
	if err := r.q.Answer(p.ID, " YES "); err != nil {
		t.Fatalf("the prompt went after a bad answer: %v", err)
	}
	pw := r.pending(t, p.ID)
	if pw.Kind != state.PromptPassword {
		t.Fatalf("after the host key: %+v", pw)
	}
	if err := r.q.Answer(pw.ID, "pw"); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(kh); !strings.Contains(string(b), fmt.Sprintf("[127.0.0.1]:%d", r.srv.Port())) {
		t.Fatalf("known_hosts after yes: %q", b)
	} else if string(b) != p.KnownHostsLine+"\n" {
		t.Errorf("known_hosts after yes: %q; the prompt said it would write %q", b, p.KnownHostsLine)
	}
	if p.KnownHostsFile != kh || !strings.HasPrefix(p.Fingerprint, "SHA256:") || !strings.Contains(p.Message, p.Fingerprint) {
		t.Errorf("host-key prompt: fingerprint %q, file %q (want %s)", p.Fingerprint, p.KnownHostsFile, kh)
	}
	if pw.Fingerprint != "" || pw.KnownHostsLine != "" {
		t.Errorf("a password prompt with host-key fields: %+v", pw)
	}
}

func TestQueueAnswerNo(t *testing.T) {
	r := newRig(t, brokertest.Options{Password: "pw"}, func(p *broker.Profile) {
		p.KnownHosts = []string{filepath.Join(filepath.Dir(p.KnownHosts[0]), "empty_known_hosts")}
		p.HostKeyPolicy = broker.Ask
	})
	done := r.dial(context.Background())
	if err := r.q.Answer(r.pending(t).ID, "no"); err != nil {
		t.Fatal(err)
	}
	err := wait(t, done)
	if err == nil || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("after no: %v", err)
	}
	if st := r.status(t); st.State != state.Backoff || !strings.Contains(st.Error, "the user said no") {
		t.Fatalf("after no: %+v", st)
	}
}

// The queue on its own: a question abandoned before it is asked is
// withdrawn at once; one whose context ends is taken off the list; an
// unknown id is refused.
func TestQueueAlone(t *testing.T) {
	q := &Queue{}
	gone := make(chan struct{})
	close(gone)
	if _, err := q.Ask(context.Background(), broker.Question{Kind: broker.Password, Abandoned: gone}); !errors.Is(err, ErrWithdrawn) {
		t.Fatalf("abandoned question: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := q.Ask(ctx, broker.Question{Profile: "gw", Kind: broker.Challenge, Text: "Code: ", Echo: true})
		errc <- err
	}()
	waitUntil(t, "the question is pending", func() bool { return len(q.Pending()) == 1 })
	if p := q.Pending()[0]; p.Kind != state.PromptChallenge || p.Message != "Code: " || !p.Echo || p.Profile != "gw" {
		t.Fatalf("pending %+v", p)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "nobody answered") {
		t.Fatalf("Ask after its context: %v", err)
	}
	if n := len(q.Pending()); n != 0 {
		t.Fatalf("%d pending after the context ended", n)
	}
	if err := q.Answer("nope", "x"); !errors.Is(err, ErrNoPrompt) {
		t.Fatalf("unknown id: %v", err)
	}
	// Answered: the answer comes back, and only there.
	go func() {
		a, err := q.Ask(context.Background(), broker.Question{Kind: broker.Passphrase})
		if err == nil && a != "phrase" {
			err = fmt.Errorf("answer %q", a)
		}
		errc <- err
	}()
	waitUntil(t, "the question is pending", func() bool { return len(q.Pending()) == 1 })
	if p := q.Pending()[0]; p.Kind != state.PromptPassphrase || p.ID == "" {
		t.Fatalf("pending %+v", p)
	}
	if err := q.Answer(q.Pending()[0].ID, "phrase"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// Closing the broker cancels the prompts it waits on.
func TestQueuePromptCancelledByClose(t *testing.T) {
	r := newRig(t, brokertest.Options{Password: "pw"}, nil)
	done := r.dial(context.Background())
	r.pending(t)
	r.b.Close()
	if err := wait(t, done); err == nil {
		t.Fatal("connected after Close")
	}
	if n := len(r.q.Pending()); n != 0 {
		t.Fatalf("%d prompts pending after Close", n)
	}
}
