package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// Server serves GET /metrics over HTTP: the collector given to Listen,
// with the Go runtime's and the process's metrics, from a registry of its
// own. It has no authentication: the metrics say which rules and profiles
// carry how much, so it belongs on the loopback unless the configuration
// says otherwise.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	log  logrus.FieldLogger
	done chan struct{}
}

// closeWait bounds how long Close waits for scrapes in progress.
const closeWait = 5 * time.Second

// Listen listens on addr (host:port, as metrics.listen holds it) and
// serves c there until Close. An address that is not on the loopback is
// served as written, with a warning: the user chose to expose it.
func Listen(addr string, c prometheus.Collector, log logrus.FieldLogger) (*Server, error) {
	reg := prometheus.NewRegistry()
	err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
		reg.Register(c),
	)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{ln: ln, log: log.WithField("metrics", ln.Addr().String()), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      errorLog{s.log},
		ErrorHandling: promhttp.ContinueOnError,
	}))
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		s.log.Warn("serving metrics beyond the loopback, without authentication, as metrics.listen says")
	} else {
		s.log.Info("serving metrics at /metrics")
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.WithError(err).Error("metrics server stopped")
		}
	}()
	return s, nil
}

// Addr is the address listened on (with the port chosen, for port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening and waits, for a bounded time, for scrapes in
// progress.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return err
}

// errorLog hands promhttp's errors (a collector failing) to the log.
type errorLog struct{ log logrus.FieldLogger }

func (l errorLog) Println(v ...any) { l.log.Warn(fmt.Sprint(v...)) }
