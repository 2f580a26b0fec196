// Package errs holds error helpers the packages share.
package errs

import "strings"

// Join is errors.Join on one line: "a; b" where errors.Join writes "a\nb".
// Errors are logged as one quoted value, where a newline shows up as a
// literal \n in the middle of the line. errors.Is and errors.As still see
// every error. Nil errors are dropped; one error is returned as it is.
func Join(errs ...error) error {
	var nonNil joined
	for _, err := range errs {
		if err != nil {
			nonNil = append(nonNil, err)
		}
	}
	switch len(nonNil) {
	case 0:
		return nil
	case 1:
		return nonNil[0]
	}
	return nonNil
}

type joined []error

func (j joined) Error() string {
	parts := make([]string, len(j))
	for i, err := range j {
		parts[i] = OneLine(err.Error())
	}
	return strings.Join(parts, "; ")
}

func (j joined) Unwrap() []error { return j }

// OneLine replaces the line breaks in s, which only foreign text (a
// server's message, a prompt's error) brings into an error, with "; ".
func OneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}
