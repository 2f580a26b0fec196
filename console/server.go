package console

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Server serves a console on a TCP address.
type Server struct {
	hs     *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	served chan struct{}
}

// Serve serves c on ln until Close, which closes ln.
func Serve(ln net.Listener, c *Console, log logrus.FieldLogger) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{ln: ln, cancel: cancel, served: make(chan struct{})}
	s.hs = &http.Server{
		Handler:           c,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          newDebugLog(log),
	}
	go func() {
		defer close(s.served)
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.WithError(err).Error("web console: serving stopped")
		}
	}()
	return s
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving: the event streams end, and the connections close.
func (s *Server) Close() error {
	s.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.hs.Shutdown(ctx)
	if err != nil {
		err = s.hs.Close()
	}
	<-s.served
	return err
}

// debugWriter turns net/http's error log into debug lines.
type debugWriter struct{ log logrus.FieldLogger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newDebugLog(l logrus.FieldLogger) *log.Logger {
	return log.New(debugWriter{l}, "web console: ", 0)
}
