package broker

import (
	"errors"
	"strings"
	"time"
)

// These helpers keep the long explanations (a refused host key, a refused
// login) to the one log line of the connection attempt; internal/errs
// keeps every error on one line.

// explained is an error whose text is a long explanation (what was
// refused, what was tried, what to do), and which has a short form for
// the flows that a connection attempt's failure refuses.
type explained interface {
	error
	// brief is the short form, with ref ("see the error logged at
	// 10:04:05") worked in.
	brief(ref string) string
}

// attemptError is the failure of one connection attempt, as the link logs
// it, with when: the flows it refuses refer to that log line.
type attemptError struct {
	err error
	at  time.Time
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// briefly is err's text with each long explanation in it replaced by its
// short form and a reference to the attempt's log line, which says it in
// full: a hundred flows refused by one unknown host key get one
// explanation, not a hundred. The wrappers around an explanation
// (fmt.Errorf with %w) hold its text verbatim, so replacing the text
// keeps theirs ("profile gw: ...", "(next attempt in 5s)").
func briefly(err error) string {
	s := err.Error()
	var a *attemptError
	if !errors.As(err, &a) {
		return s
	}
	ref := "see the error logged at " + a.at.Format("15:04:05")
	for _, x := range explanations(a.err) {
		s = strings.Replace(s, x.Error(), x.brief(ref), 1)
	}
	return s
}

// explanations lists the explained errors in err's tree, outermost first.
// A jump profile's failure, already brief (a SetupError), is left alone.
func explanations(err error) []explained {
	var out []explained
	var walk func(error)
	walk = func(err error) {
		if x, ok := err.(explained); ok {
			out = append(out, x)
			return
		}
		if _, ok := err.(*SetupError); ok {
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			if e := u.Unwrap(); e != nil {
				walk(e)
			}
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}
