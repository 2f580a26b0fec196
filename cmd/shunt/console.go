package main

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/console"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
)

// consolePages are the web console's pages.
var consolePages fs.FS = console.Placeholder

// startConsole serves the web console: on the control socket (srv, nil
// where there is none) at /console/, and at console.listen when set. The
// login token is new, written to the state directory; stop removes it
// and stops the listener.
func startConsole(cfg *config.Config, srv *control.Server, be control.Backend, log logrus.FieldLogger) (stop func(), err error) {
	listen := cfg.Console.Addr
	token, err := console.WriteToken(cfg.StateDir)
	if err != nil {
		if listen.IsValid() {
			return nil, fmt.Errorf("web console (console.listen %s): %w", listen, err)
		}
		log.WithError(err).Warn("web console: no login token, so no console on the control socket")
		return func() {}, nil
	}
	// Under sudo, the token is the user's who ran it (as shunt up's
	// known_hosts entries are), so that their shunt console reads it.
	if o := engine.SudoOwner(os.Getenv); o != nil {
		if err := os.Chown(filepath.Join(cfg.StateDir, console.TokenFile), o.UID, o.GID); err != nil {
			log.WithError(err).Warn("web console: giving the login token to the user who ran sudo")
		}
	}
	removeToken := func() {
		if err := console.RemoveToken(cfg.StateDir); err != nil {
			log.WithError(err).Warn("web console: removing the login token")
		}
	}
	var api = control.NewHandler(be, log)
	if srv != nil {
		api = srv.APIHandler()
		c, err := console.New(console.Options{API: api, Pages: consolePages, Token: token, Log: log})
		if err != nil {
			removeToken()
			return nil, err
		}
		srv.HandleConsole(c)
	}
	if !listen.IsValid() {
		return removeToken, nil
	}
	c, err := console.New(console.Options{API: api, Pages: consolePages, Token: token, Listen: listen, AllowFrom: cfg.Console.Allow, Log: log})
	if err != nil {
		removeToken()
		return nil, err
	}
	ln, err := net.Listen("tcp", listen.String())
	if err != nil {
		removeToken()
		return nil, fmt.Errorf("web console (console.listen, %s:%d): %w", cfg.Console.File, cfg.Console.Line, err)
	}
	cs := console.Serve(ln, c, log)
	log.WithField("listen", listen.String()).Info("web console: serving; shunt console prints its URL")
	return func() {
		cs.Close()
		removeToken()
	}, nil
}
