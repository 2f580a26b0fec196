package errs

import (
	"errors"
	"io"
	"os"
	"testing"
)

func TestJoin(t *testing.T) {
	if Join(nil, nil) != nil {
		t.Fatal("Join of nils is not nil")
	}
	if err := Join(nil, io.EOF); err != io.EOF {
		t.Fatalf("Join of one error = %v, want it as it is", err)
	}
	err := Join(io.EOF, errors.New("SSH connection\nlost"), os.ErrClosed)
	if got, want := err.Error(), "EOF; SSH connection; lost; file already closed"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, io.EOF) || !errors.Is(err, os.ErrClosed) {
		t.Fatal("errors.Is does not see the joined errors")
	}
}
