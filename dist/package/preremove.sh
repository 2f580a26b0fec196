#!/bin/sh
# Before removal (not upgrade): stop the service, which removes its routes,
# policy rules and TUN device. deb passes "remove", rpm passes 0 on erase.
set -e
case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop shunt.service || true
	fi
	;;
esac
