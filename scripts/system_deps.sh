#!/usr/bin/env bash
# System packages the test suite drives for real: Debian's chromium (the report viewed in a
# headless browser) and openssh-server/rsync/netcat (the `ray up` local-provider e2e).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v rsync >/dev/null || need+=(rsync)
command -v nc >/dev/null || need+=(netcat-openbsd)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
