package engine

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

type failingDialer struct{ err error }

func (d failingDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, d.err
}

// Dials refused for want of descriptors are logged at most once a
// window, the ones in between counted in the next warning; other
// failures are not.
func TestFDDialerWarns(t *testing.T) {
	var logs bytes.Buffer
	log := logrus.New()
	log.Out = &logs
	now := time.Now()
	d := newFDDialer(failingDialer{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.EMFILE}}, log)
	d.now = func() time.Time { return now }
	for range 5 {
		if _, err := d.DialContext(context.Background(), "tcp", "192.0.2.1:80"); !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("err %v, want EMFILE passed on", err)
		}
	}
	if n := strings.Count(logs.String(), "out of file descriptors"); n != 1 {
		t.Fatalf("%d warnings for 5 refusals in a window, want 1:\n%s", n, logs.String())
	}
	now = now.Add(fdWarnEvery)
	d.DialContext(context.Background(), "tcp", "192.0.2.1:80")
	if n := strings.Count(logs.String(), "out of file descriptors"); n != 2 || !strings.Contains(logs.String(), "refused=5") {
		t.Fatalf("after the window: %d warnings, want 2, the second counting 5:\n%s", n, logs.String())
	}
	logs.Reset()
	other := newFDDialer(failingDialer{syscall.ECONNREFUSED}, log)
	other.DialContext(context.Background(), "tcp", "192.0.2.1:80")
	if logs.Len() != 0 {
		t.Errorf("a refused connection logged %q", logs.String())
	}
}

// openFiles counts this process's descriptors: one more file open, one more.
func TestOpenFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no descriptors to count on Windows")
	}
	before, err := openFiles()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if after, err := openFiles(); err != nil || after != before+1 {
		t.Fatalf("openFiles: %d before a file was opened, %d (%v) after; want one more", before, after, err)
	}
}
