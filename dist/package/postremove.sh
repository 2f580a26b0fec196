#!/bin/sh
# After removal: let systemd forget the unit file that is gone.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
