// Package prompt asks the user the broker's questions: on the terminal, or
// through an SSH_ASKPASS program, chosen as OpenSSH chooses; or, in a
// shunt nobody sits at (the daemon), keeps them pending until they are
// answered from outside (Queue).
package prompt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"golang.org/x/term"

	"github.com/shunt-dev/shunt/broker"
)

// DefaultAskpass is where Debian's ssh-askpass lives; OpenSSH uses it when
// SSH_ASKPASS_REQUIRE=force and SSH_ASKPASS is unset.
const DefaultAskpass = "/usr/bin/ssh-askpass"

// Serial makes a Prompter ask one question at a time, so prompts from
// concurrent connection attempts do not interleave.
type Serial struct {
	mu sync.Mutex
	P  broker.Prompter
}

// Ask implements broker.Prompter.
func (s *Serial) Ask(ctx context.Context, q broker.Question) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.P.Ask(ctx, q)
}

// Terminal asks on the controlling terminal, /dev/tty, without echo for
// secrets.
type Terminal struct {
	// Open opens the terminal; nil means /dev/tty.
	Open func() (*os.File, error)
}

// Ask implements broker.Prompter.
func (t *Terminal) Ask(ctx context.Context, q broker.Question) (string, error) {
	open := t.Open
	if open == nil {
		open = func() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) }
	}
	tty, err := open()
	if err != nil {
		return "", fmt.Errorf("no terminal to ask for %s: %w", q.Kind, err)
	}
	defer tty.Close()
	fmt.Fprintf(tty, "[shunt: profile %s] %s", q.Profile, q.Text)
	type result struct {
		s   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var b []byte
		var err error
		if q.Echo {
			b, err = readLine(tty)
		} else {
			b, err = term.ReadPassword(int(tty.Fd()))
			fmt.Fprintln(tty)
		}
		done <- result{string(b), err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("nobody answered the prompt for %s: %w", q.Kind, ctx.Err())
	}
}

func readLine(r io.Reader) ([]byte, error) {
	var out []byte
	b := make([]byte, 1)
	for {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				return bytes.TrimSuffix(out, []byte("\r")), nil
			}
			out = append(out, b[0])
		}
		if err != nil {
			return out, err
		}
	}
}

// Askpass runs an SSH_ASKPASS program, as ssh(1) does: the prompt is its
// argument, the answer its standard output. A host-key question sets
// SSH_ASKPASS_PROMPT=confirm, so the program can offer yes and no.
type Askpass struct {
	Program string
}

// Ask implements broker.Prompter.
func (a *Askpass) Ask(ctx context.Context, q broker.Question) (string, error) {
	text := fmt.Sprintf("[shunt: profile %s] %s", q.Profile, q.Text)
	cmd := exec.CommandContext(ctx, a.Program, text)
	cmd.Env = os.Environ()
	if q.Kind == broker.HostKey {
		cmd.Env = append(cmd.Env, "SSH_ASKPASS_PROMPT=confirm")
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			// ssh-askpass exits non-zero when the user cancels.
			if q.Kind == broker.HostKey {
				return "no", nil
			}
			return "", fmt.Errorf("%s: the user cancelled the prompt for %s", a.Program, q.Kind)
		}
		return "", fmt.Errorf("run SSH_ASKPASS %s: %w", a.Program, err)
	}
	ans := strings.TrimRight(out.String(), "\r\n")
	if q.Kind == broker.HostKey && ans == "" {
		// A confirm dialog answers by exit status alone.
		ans = "yes"
	}
	return ans, nil
}

// FromEnv chooses the prompter as OpenSSH does from SSH_ASKPASS,
// SSH_ASKPASS_REQUIRE and DISPLAY (or WAYLAND_DISPLAY):
//   - "never": the terminal only;
//   - "prefer": SSH_ASKPASS when it is set, else the terminal;
//   - "force": SSH_ASKPASS (or DefaultAskpass), even with a terminal;
//   - unset: the terminal if there is one; else SSH_ASKPASS when a display
//     is set.
//
// hasTTY says whether a controlling terminal is available. The result is
// nil when nobody can be asked.
func FromEnv(getenv func(string) string, hasTTY bool) broker.Prompter {
	askpass := getenv("SSH_ASKPASS")
	display := getenv("DISPLAY") != "" || getenv("WAYLAND_DISPLAY") != ""
	var p broker.Prompter
	switch getenv("SSH_ASKPASS_REQUIRE") {
	case "never":
		if hasTTY {
			p = &Terminal{}
		}
	case "prefer":
		switch {
		case askpass != "":
			p = &Askpass{Program: askpass}
		case hasTTY:
			p = &Terminal{}
		}
	case "force":
		if askpass == "" {
			askpass = DefaultAskpass
		}
		p = &Askpass{Program: askpass}
	default:
		switch {
		case hasTTY:
			p = &Terminal{}
		case askpass != "" && display:
			p = &Askpass{Program: askpass}
		}
	}
	if p == nil {
		return nil
	}
	return &Serial{P: p}
}

// HasTTY reports whether the process has a controlling terminal.
func HasTTY() bool {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
