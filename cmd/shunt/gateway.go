package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/shunt-dev/shunt/config"
	"github.com/shunt-dev/shunt/gateway"
)

// gatewayConfigFile is read by shunt gateway when it exists and no
// --config is given.
const gatewayConfigFile = "/etc/shunt/gateway.yaml"

const gatewayUsage = "usage: shunt gateway [--config FILE] [--listen ADDR]... [--host-key FILE] [--authorized-keys FILE] [--permit NET[:PORTS]]... [--log-level LEVEL]"

func cmdGateway(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runGateway(ctx, args, stdout, stderr, gatewayConfigFile)
}

// runGateway is shunt gateway until ctx ends; defaultConfig is read when
// it exists and no --config is given.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer, defaultConfig string) int {
	fset := flag.NewFlagSet("shunt gateway", flag.ContinueOnError)
	var listen, permit stringList
	configFile := fset.String("config", "", "gateway configuration `file` (YAML; default "+gatewayConfigFile+" if it exists)")
	fset.Var(&listen, "listen", "`address` to accept SSH connections on, e.g. :2222; repeatable; replaces the file's listen")
	hostKey := fset.String("host-key", "", "host private key `file` (made on first start if missing: ed25519, OpenSSH format, 0600, with FILE.pub)")
	authKeys := fset.String("authorized-keys", "", "authorized_keys `file` (OpenSSH format; permitopen= and from= are honoured)")
	fset.Var(&permit, "permit", "destinations clients may open, `NET[:PORTS]`, e.g. 10.0.0.0/8:22,80,443-445; repeatable; replaces the file's permit")
	level := fset.String("log-level", "info", "log `level`: debug, info, warn or error")
	if err := parseFlags(fset, args, stdout, stderr); err != nil || fset.NArg() > 0 {
		return usageExit(err, stderr, gatewayUsage)
	}
	if _, err := logrus.ParseLevel(*level); err != nil {
		fmt.Fprintf(stderr, "shunt gateway: --log-level %q: write debug, info, warn or error\n", *level)
		return 2
	}
	cfg := gateway.DefaultConfig()
	path := *configFile
	if path == "" {
		if _, err := os.Stat(defaultConfig); err == nil {
			path = defaultConfig
		} else if !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(stderr, "shunt gateway: %v\n", err)
			return 1
		}
	}
	if path != "" {
		c, err := gateway.Load(path)
		if err != nil {
			printConfigError(stderr, err)
			return 1
		}
		cfg = *c
	}
	if len(listen) > 0 {
		cfg.Listen = listen
	}
	if len(permit) > 0 {
		p, err := gateway.ParsePermit(permit)
		if err != nil {
			fmt.Fprintf(stderr, "shunt gateway: --permit: %v\n", err)
			return 2
		}
		cfg.Permit = p
	}
	if *hostKey != "" {
		cfg.HostKey = *hostKey
	}
	if *authKeys != "" {
		cfg.AuthorizedKeys = *authKeys
	}
	log := newLogger(stderr, config.Log{Level: *level})
	if err := gateway.Run(ctx, cfg, log); err != nil {
		printConfigError(stderr, err)
		return 1
	}
	return 0
}
