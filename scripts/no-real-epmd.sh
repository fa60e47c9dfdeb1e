#!/usr/bin/env bash
# Keeps a real EPMD off this machine's network, for scripts/setup.sh (which
# already keeps its package install from starting any service).
# Debian's erlang-base ships and enables epmd.socket: on a machine run by
# systemd, systemd listens on port 4369 on every address and starts epmd on
# the first connection, a real EPMD on the network on the port beamgate's
# gateway answers EPMD on. This disables and stops both units. Without systemd
# (a container, this project's CI) there is nothing to do, and it does nothing.
#   no-real-epmd.sh disable
# BEAMGATE_SYSTEMD_DIR (default /run/systemd/system, present when systemd is
# PID 1) is only there so the tests can point it elsewhere.
set -euo pipefail
[ "${1:-}" = disable ] || { echo "no-real-epmd: usage: no-real-epmd.sh disable" >&2; exit 2; }
[ -d "${BEAMGATE_SYSTEMD_DIR:-/run/systemd/system}" ] || exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if systemctl list-unit-files epmd.socket epmd.service 2>/dev/null | grep -q '^epmd\.'; then
  echo "setup: disabling Debian's epmd.socket and epmd.service (a real EPMD on every address, port 4369)"
  $SUDO systemctl disable --now epmd.socket epmd.service
fi
