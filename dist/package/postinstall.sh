#!/bin/sh
# After install or upgrade: make systemd see the (new) unit. Like most Debian
# packages of daemons that need configuring first, the service is neither
# enabled nor started: edit /etc/shunt/shunt.yaml, then
# systemctl enable --now shunt.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
