package broker

import (
	"context"
	"fmt"
)

// Prompter asks the user something on the broker's behalf: on a terminal,
// through SSH_ASKPASS, or through the control socket of a headless shunt
// (prompt.Queue). Ask returns when the user answered or ctx ended (the
// broker's prompt timeout, or Close). Implementations that share one
// terminal serialise their questions; answers are never logged. While a
// connection waits on Ask, its profile's state is state.WaitingForAuth.
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
	// Profile is the profile whose settings the connection uses (for a
	// host-from-application server too: Server tells them apart).
	Profile string
	Server  string // host:port
	Kind    QuestionKind
	// Text is the whole prompt, as OpenSSH would word it.
	Text string
	// Echo is true when the answer may be shown as it is typed.
	Echo bool
	// HostKey, for a HostKey question, is the key asked about, as
	// OpenSSH names it: "ED25519 SHA256:...".
	HostKey string
	// For a HostKey question too: the key's SHA256 fingerprint, the line
	// accepting it appends to known_hosts, and that file ("" if none).
	Fingerprint, KnownHostsLine, KnownHostsFile string
	// Abandoned is closed once no flow waits for the connection any more
	// (nil: never). A prompter may withdraw the question then, and
	// return an error, as prompt.Queue does; or keep asking, as the
	// terminal does, so that the answer serves the next flow. A login
	// whose question was withdrawn is not held against the server: the
	// next flow tries again at once, and asks again.
	Abandoned <-chan struct{}
}
