#!/usr/bin/env bash
# Makes the RabbitMQ 4 root for the RabbitMQ suite (docs/rabbitmq.md): a copy
# of the cached Debian trixie root (scripts/otp-roots.sh, OTP 27) with
# trixie's rabbitmq-server (4.0) installed in it. Brokers and their CLI run
# from it inside the namespace hosts, through `unshare --mount` + `chroot`
# like the OTP roots. Cached: a root that exists and holds a working
# RabbitMQ 4 is reused, so a second set-up takes seconds.
#
#   BEAMGATE_OTP_ROOTS=0         skip (the RabbitMQ 4 tests say they are skipped)
#   BEAMGATE_ROOTS_DIR=DIR       where the roots live (default /var/cache/beamgate/roots)
#   BEAMGATE_OTP_ROOT_SUITES=... without trixie: skip too (nothing to make it from)
#
# Built in DIR/trixie-rabbitmq.partial and renamed to DIR/trixie-rabbitmq only
# once it works; its log is DIR/trixie-rabbitmq.log. The install starts no
# service: a policy-rc.d in the root answers 101 ("action forbidden") and
# stays there, so nothing run in the root later starts one either; a broker
# or epmd found running from the root after the install fails the script.
set -euo pipefail

if [ "${BEAMGATE_OTP_ROOTS:-1}" = "0" ]; then
  echo "rabbitmq-root: skipped (BEAMGATE_OTP_ROOTS=0)"
  exit 0
fi

ROOTS_DIR="${BEAMGATE_ROOTS_DIR:-/var/cache/beamgate/roots}"
BASE="$ROOTS_DIR/trixie"
ROOT="$ROOTS_DIR/trixie-rabbitmq"
PART="$ROOT.partial"
LOG="$ROOT.log"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# The RabbitMQ version a root holds (from its rabbit application's directory), or nothing.
rabbit_version() {
  local d
  for d in "$1"/usr/lib/rabbitmq/lib/rabbitmq_server-*; do
    [ -d "$d" ] && { basename "$d" | sed 's/^rabbitmq_server-//'; return; }
  done
}

# Usable: RabbitMQ 4's scripts are there and erl starts (never the broker or
# the CLI here: both would want an EPMD on this machine's network).
works() {
  local root="$1" v
  v="$(rabbit_version "$root")"
  [ -x "$root/usr/lib/rabbitmq/bin/rabbitmq-server" ] && [ -x "$root/usr/lib/rabbitmq/bin/rabbitmqctl" ] &&
    [ "${v%%.*}" = "4" ] &&
    timeout 60 $SUDO chroot "$root" /usr/bin/erl -noshell -eval 'halt().' >/dev/null 2>&1
}

MOUNTED=""
cleanup() {
  if [ -n "$MOUNTED" ]; then
    $SUDO umount "$MOUNTED" 2>/dev/null || $SUDO umount -l "$MOUNTED" 2>/dev/null || true
    MOUNTED=""
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

heavy_run() {
  if command -v heavy >/dev/null 2>&1; then heavy "$@"; else "$@"; fi
}

# Processes whose root directory is $1 (a broker, epmd or anything else the install left running).
running_in() {
  local p r
  for p in /proc/[0-9]*; do
    r="$($SUDO readlink "$p/root" 2>/dev/null || true)"
    [ "$r" = "$1" ] && echo "${p#/proc/} $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null || true)"
  done
  return 0
}

if [ -d "$ROOT" ] && works "$ROOT"; then
  echo "rabbitmq-root: reused ($ROOT: RabbitMQ $(rabbit_version "$ROOT"))"
  exit 0
fi
if [ ! -x "$BASE/usr/bin/erl" ]; then
  # Left out on purpose (otp-roots.sh was told to make other roots only): say so, as BEAMGATE_OTP_ROOTS=0 does.
  case " ${BEAMGATE_OTP_ROOT_SUITES:-trixie} " in
    *" trixie "*) ;;
    *) echo "rabbitmq-root: skipped (BEAMGATE_OTP_ROOT_SUITES leaves out trixie, which it is made from)"; exit 0 ;;
  esac
  echo "rabbitmq-root: $BASE does not exist: run bash scripts/otp-roots.sh first" >&2
  exit 1
fi

start=$SECONDS
echo "rabbitmq-root: making $ROOT from $BASE (log $LOG)"
$SUDO rm -rf "$PART"
: >"$LOG"
$SUDO cp -a "$BASE" "$PART"
printf '#!/bin/sh\n# beamgate: start no service in this root\nexit 101\n' | $SUDO tee "$PART/usr/sbin/policy-rc.d" >/dev/null
$SUDO chmod 755 "$PART/usr/sbin/policy-rc.d"
$SUDO mount -t proc proc "$PART/proc"
MOUNTED="$PART/proc"
apt=(apt-get -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -y -q)
if ! heavy_run $SUDO env DEBIAN_FRONTEND=noninteractive LC_ALL=C chroot "$PART" sh -c \
    "${apt[*]} update && ${apt[*]} install rabbitmq-server && apt-get clean" >>"$LOG" 2>&1; then
  cleanup
  echo "rabbitmq-root: installing rabbitmq-server failed; see $LOG" >&2; tail -n 20 "$LOG" >&2; exit 1
fi
left="$(running_in "$(readlink -f "$PART")")"
cleanup
if [ -n "$left" ]; then
  echo "rabbitmq-root: the install left processes running in $PART; stop them:" >&2
  echo "$left" >&2
  exit 1
fi
if ! works "$PART"; then echo "rabbitmq-root: no working RabbitMQ 4 in $PART; see $LOG" >&2; exit 1; fi
$SUDO rm -rf "$ROOT"
$SUDO mv "$PART" "$ROOT"
echo "rabbitmq-root: ready in $((SECONDS - start)) s: RabbitMQ $(rabbit_version "$ROOT") on OTP $($SUDO chroot "$ROOT" /usr/bin/erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null)"
