package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/sirupsen/logrus"
)

// Run serves the configuration c until ctx ends: it reads the
// authorized keys, loads or makes the host key, listens on every address,
// and then closes everything. A listener failing stops the others.
func Run(ctx context.Context, c Config, log logrus.FieldLogger) error {
	if c.AuthorizedKeys == "" {
		return errors.New("no authorized keys: set authorized_keys in the gateway configuration, or pass --authorized-keys FILE (OpenSSH format)")
	}
	if c.HostKey == "" {
		return errors.New("no host key: set host_key in the gateway configuration, or pass --host-key FILE (made on first start if missing)")
	}
	if len(c.Listen) == 0 {
		return errors.New("no listen address: set listen in the gateway configuration, or pass --listen ADDR")
	}
	// Read once here so that a bad file stops the start; the server
	// reads it again at each login.
	keys, err := LoadAuthorizedKeys(c.AuthorizedKeys)
	if err != nil {
		return err
	}
	if keys.Len() == 0 {
		log.WithField("file", c.AuthorizedKeys).Warn("no keys in the authorized keys file: nobody can log in")
	}
	signer, created, err := LoadOrCreateHostKey(c.HostKey)
	if err != nil {
		return err
	}
	if created {
		log.WithField("file", c.HostKey).Info("made a new ed25519 host key")
	}
	if len(c.Permit) == 0 {
		log.Warn("the permit list is empty: clients can log in but open nothing; add permit entries (NET[:PORTS])")
	}
	s, err := New(Options{
		HostKey:            signer,
		AuthorizedKeysFile: c.AuthorizedKeys,
		Permit:             c.Permit,
		MaxStartups:        c.MaxStartups,
		MaxAuthTries:       c.MaxAuthTries,
		LoginGraceTime:     c.LoginGraceTime,
		Log:                log,
	})
	if err != nil {
		return err
	}
	var ls []net.Listener
	for _, addr := range c.Listen {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	errs := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errs <- s.Serve(l) }()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	s.Close()
	n := len(ls)
	if first != nil {
		n--
	}
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}
