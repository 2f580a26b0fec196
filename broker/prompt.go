package broker

import (
	"context"
	"fmt"
)

// Prompter asks the user something on the broker's behalf: on a terminal,
// through SSH_ASKPASS, or through the control socket of a headless shunt.
// Implementations serialise their questions; answers are never logged.
type Prompter interface {
	Ask(ctx context.Context, q Question) (string, error)
}

// QuestionKind says what is being asked.
type QuestionKind int

const (
	// Passphrase of an encrypted private key.
	Passphrase QuestionKind = iota
	// Password for password authentication.
	Password
	// Challenge is a keyboard-interactive question.
	Challenge
	// HostKey asks to accept an unknown host key; "yes" accepts.
	HostKey
)

func (k QuestionKind) String() string {
	switch k {
	case Passphrase:
		return "a key passphrase"
	case Password:
		return "a password"
	case Challenge:
		return "a keyboard-interactive answer"
	case HostKey:
		return "a host key confirmation"
	}
	return fmt.Sprintf("question(%d)", int(k))
}

// Question is one prompt.
type Question struct {
	Profile string
	Server  string // host:port
	Kind    QuestionKind
	// Text is the whole prompt, as OpenSSH would word it.
	Text string
	// Echo is true when the answer may be shown as it is typed.
	Echo bool
}
