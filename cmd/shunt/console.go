package main

import (
	"errors"
	"flag"
	"fmt"
	"html"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/console"
	"github.com/shunt-dev/shunt/console/web"
	"github.com/shunt-dev/shunt/control"
	"github.com/shunt-dev/shunt/engine"
	"github.com/shunt-dev/shunt/state"
)

// startConsole serves the web console: on the control socket (srv, nil
// where there is none) at /console/, and at console.listen when set. The
// login token is new, written to the state directory; stop removes it
// and stops the listener.
func startConsole(cfg *config.Config, srv *control.Server, be *served, log logrus.FieldLogger) (stop func(), err error) {
	listen := cfg.Console.Addr
	token, err := console.WriteToken(cfg.StateDir)
	if err != nil {
		if listen.IsValid() {
			return nil, fmt.Errorf("web console (console.listen %s): %w", listen, err)
		}
		log.WithError(err).Warn("web console: no login token, so no console on the control socket")
		return func() {}, nil
	}
	tokenFile := filepath.Join(cfg.StateDir, console.TokenFile)
	// Under sudo, the token is the user's who ran it (as shunt up's
	// known_hosts entries are), so that their shunt console reads it.
	if o := engine.SudoOwner(os.Getenv); o != nil {
		if err := os.Chown(tokenFile, o.UID, o.GID); err != nil {
			log.WithError(err).Warn("web console: giving the login token to the user who ran sudo")
		}
	}
	removeToken := func() {
		be.console.Store(nil)
		if err := console.RemoveToken(cfg.StateDir); err != nil {
			log.WithError(err).Warn("web console: removing the login token")
		}
	}
	var api = control.NewHandler(be, log)
	if srv != nil {
		api = srv.APIHandler()
		c, err := console.New(console.Options{API: api, Pages: web.FS, Token: token, Log: log})
		if err != nil {
			removeToken()
			return nil, err
		}
		srv.HandleConsole(c)
	}
	if !listen.IsValid() {
		if srv != nil {
			be.console.Store(&state.Console{TokenFile: tokenFile})
		}
		return removeToken, nil
	}
	c, err := console.New(console.Options{API: api, Pages: web.FS, Token: token, Listen: listen, AllowFrom: cfg.Console.Allow, Log: log})
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
	be.console.Store(&state.Console{Listen: listen.String(), TokenFile: tokenFile})
	log.WithField("listen", listen.String()).Info("web console: serving; shunt console prints its URL")
	return func() {
		cs.Close()
		removeToken()
	}, nil
}

// Console is shunt console's --json answer.
type consoleURL struct {
	URL string `json:"url"`
}

// console prints the web console's URL with its login token, and opens a
// browser on it where there is a display.
func (c *ctl) console(args []string) int {
	var noBrowser bool
	cf, rest, err := c.parse("console", args, func(fs *flag.FlagSet) {
		fs.BoolVar(&noBrowser, "no-browser", false, "print the URL only: do not open a browser")
	})
	if err != nil || len(rest) > 0 {
		return usageExit(err, c.stderr, "usage: shunt console [--no-browser] [--json] [--socket PATH]")
	}
	st, err := c.client(cf).Status(c.ctx)
	if err != nil {
		return c.fail("console", err)
	}
	const enable = "add\n\n  console:\n    listen: 127.0.0.1:9560\n\nto its configuration and restart it"
	switch {
	case st.Console == nil:
		return c.fail("console", errors.New("the running shunt serves no web console (it could not write its login token, see its log, or it is older than the console)"))
	case st.Console.Listen == "":
		return c.fail("console", errors.New("the running shunt serves the web console only on its control socket (at /console/): to open it in a browser, "+enable))
	}
	token, err := console.ReadTokenFile(st.Console.TokenFile)
	if errors.Is(err, fs.ErrPermission) {
		err = fmt.Errorf("%w: run shunt console as the user the running shunt runs as (sudo shunt console, for a shunt of root's)", err)
	}
	if err != nil {
		return c.fail("console", err)
	}
	u, err := loginURL(st.Console.Listen, token)
	if err != nil {
		return c.fail("console", err)
	}
	if cf.json {
		c.printJSON(consoleURL{u})
	} else {
		fmt.Fprintln(c.stdout, u)
	}
	if noBrowser || c.browse == nil || (c.getenv("DISPLAY") == "" && c.getenv("WAYLAND_DISPLAY") == "") {
		return 0
	}
	if err := c.browse(u); err != nil {
		fmt.Fprintf(c.stderr, "shunt console: no browser opened (%v): open the URL above\n", err)
	}
	return 0
}

// loginURL is the console's login URL at listen: a wildcard address is
// reached at loopback.
func loginURL(listen, token string) (string, error) {
	ap, err := netip.ParseAddrPort(listen)
	if err != nil {
		return "", fmt.Errorf("the running shunt's console address %q: %w", listen, err)
	}
	a := ap.Addr()
	switch {
	case a == netip.IPv4Unspecified():
		a = netip.MustParseAddr("127.0.0.1")
	case a == netip.IPv6Unspecified():
		a = netip.IPv6Loopback()
	}
	return (&url.URL{Scheme: "http", Host: netip.AddrPortFrom(a, ap.Port()).String(), Path: "/login", RawQuery: "token=" + url.QueryEscape(token)}).String(), nil
}

// browseURL opens u in the desktop's browser (xdg-open). The token is
// not put on xdg-open's command line, where other users' ps would see
// it: xdg-open gets a file of the user's own (0600) that sends the
// browser on.
func browseURL(u string) error {
	opener, err := exec.LookPath("xdg-open")
	if err != nil {
		return err
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "shunt-console-*.html")
	if err != nil {
		return err
	}
	page := `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=` + html.EscapeString(u) + `"><title>shunt console</title><p><a href="` + html.EscapeString(u) + `">shunt console</a></p>` + "\n"
	if _, err := f.WriteString(page); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	cmd := exec.Command(opener, f.Name())
	if err := cmd.Start(); err != nil {
		return err
	}
	// The browser reads the file later; xdg-open returns at once.
	go cmd.Wait()
	return nil
}
