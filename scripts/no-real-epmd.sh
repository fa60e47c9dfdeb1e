#!/usr/bin/env bash
# Keeps a real EPMD off this machine's network, for scripts/setup.sh.
# Debian's erlang-base ships epmd.socket: on a machine run by systemd it
# listens on port 4369 on every address and starts epmd on the first
# connection, a real EPMD on the network on the port beamgate's gateway
# answers EPMD on. Without systemd (a container, this project's CI) there is
# nothing to do.
#   no-real-epmd.sh guard-install   before apt-get: a policy-rc.d that stops the
#                                   install from starting epmd (kept if one exists)
#   no-real-epmd.sh end-install     after apt-get: removes that policy-rc.d
#   no-real-epmd.sh disable         systemctl disable --now epmd.socket epmd.service
# BEAMGATE_SYSTEMD_DIR (default /run/systemd/system, present when systemd is
# PID 1) and BEAMGATE_POLICY_RC_D (default /usr/sbin/policy-rc.d) are only
# there so the tests can point them elsewhere.
set -euo pipefail
systemd_dir=${BEAMGATE_SYSTEMD_DIR:-/run/systemd/system}
policy=${BEAMGATE_POLICY_RC_D:-/usr/sbin/policy-rc.d}
marker="# beamgate setup: no real EPMD during the install"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

case "${1:-}" in
  guard-install | end-install | disable) ;;
  *)
    echo "no-real-epmd: usage: no-real-epmd.sh guard-install|end-install|disable" >&2
    exit 2
    ;;
esac
[ -d "$systemd_dir" ] || exit 0

case "${1:-}" in
  guard-install)
    # deb-systemd-invoke asks policy-rc.d once per unit; 101 means "do not run".
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\n%s\ncase "$1" in epmd|epmd.socket|epmd.service) exit 101;; esac\nexit 0\n' "$marker" | $SUDO tee "$policy" >/dev/null
      $SUDO chmod 755 "$policy"
    fi
    ;;
  end-install)
    if [ -f "$policy" ] && grep -qxF "$marker" "$policy"; then $SUDO rm -f "$policy"; fi
    ;;
  disable)
    if systemctl list-unit-files epmd.socket epmd.service 2>/dev/null | grep -q '^epmd\.'; then
      echo "setup: disabling Debian's epmd.socket and epmd.service (a real EPMD on every address, port 4369)"
      $SUDO systemctl disable --now epmd.socket epmd.service
    fi
    ;;
esac
