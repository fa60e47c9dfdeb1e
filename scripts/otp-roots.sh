#!/usr/bin/env bash
# Makes the Debian roots that hold newer Erlang/OTP and Elixir for the
# compatibility suite and the benchmark (docs/compatibility.md): trixie
# (OTP 27, Elixir 1.18) and sid (OTP 29, Elixir 1.20), made with debootstrap
# from the Debian mirror this machine's apt already uses, with only what a
# node needs. Cached: a root that exists and starts `erl` is reused.
#
#   BEAMGATE_OTP_ROOTS=0         skip (the suites that need a root say so)
#   BEAMGATE_ROOTS_DIR=DIR       where the roots live (default /var/cache/beamgate/roots)
#   BEAMGATE_OTP_ROOT_SUITES=... which roots (default "trixie sid")
#   BEAMGATE_DEBIAN_MIRROR=URL   the mirror, when apt's sources name none
#
# Each root is built in DIR/SUITE.partial and renamed to DIR/SUITE only once it
# works, so an interrupted run leaves nothing that looks usable; its log is
# DIR/SUITE.log. /proc is mounted into a root only while packages install and
# is always unmounted again (also on failure or interrupt).
set -euo pipefail

if [ "${BEAMGATE_OTP_ROOTS:-1}" = "0" ]; then
  echo "otp-roots: skipped (BEAMGATE_OTP_ROOTS=0)"
  exit 0
fi

ROOTS_DIR="${BEAMGATE_ROOTS_DIR:-/var/cache/beamgate/roots}"
SUITES="${BEAMGATE_OTP_ROOT_SUITES:-trixie sid}"
# What a node needs: the runtime, TLS/crypto (rpc of ssl, the bench's TLS
# paths), mnesia and runtime_tools (common in clusters), erlang-dev and
# erlang-tools for `mix release`, and Elixir.
PACKAGES=(erlang-base erlang-ssl erlang-crypto erlang-public-key erlang-asn1 erlang-mnesia
  erlang-runtime-tools erlang-dev erlang-tools erlang-syntax-tools erlang-parsetools elixir)

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# The host's Debian mirror: the first URI of a source that carries the host's
# own release (not -security), from deb822 .sources or one-line .list files.
mirror() {
  if [ -n "${BEAMGATE_DEBIAN_MIRROR:-}" ]; then echo "$BEAMGATE_DEBIAN_MIRROR"; return; fi
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } }' "$f")"
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri="$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\// ) { if ($i ~ /debian\/?$/ && $i !~ /security/) { print $i; exit } else break } }' "$f")"
    if [ -n "$uri" ]; then echo "${uri%/}"; return; fi
  done
  return 1
}

# A root is usable when erl starts in it and elixir is there.
works() {
  local root="$1"
  [ -x "$root/usr/bin/erl" ] && [ -x "$root/usr/bin/elixir" ] &&
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

# Runs the heavy steps in one of the machine's heavy slots where it has them.
heavy_run() {
  if command -v heavy >/dev/null 2>&1; then heavy "$@"; else "$@"; fi
}

build_root() {
  local suite="$1" url="$2" root="$ROOTS_DIR/$1" part="$ROOTS_DIR/$1.partial" log="$ROOTS_DIR/$1.log"
  local start=$SECONDS
  echo "otp-roots: making $root from $url ($suite; log $log; takes minutes)"
  $SUDO rm -rf "$part"
  : >"$log"
  # No Valid-Until check: sid's index on a mirror snapshot can be older than
  # its validity date; the archive signature is still checked.
  heavy_run $SUDO debootstrap --variant=minbase "$suite" "$part" "$url" >>"$log" 2>&1 || {
    echo "otp-roots: debootstrap $suite failed; see $log" >&2; tail -n 20 "$log" >&2; return 1; }
  $SUDO mount -t proc proc "$part/proc"
  MOUNTED="$part/proc"
  local apt=(apt-get -o Acquire::Check-Valid-Until=false -o APT::Install-Recommends=false -y -q)
  if ! heavy_run $SUDO env DEBIAN_FRONTEND=noninteractive LC_ALL=C chroot "$part" sh -c \
      "${apt[*]} update && ${apt[*]} install ${PACKAGES[*]} && apt-get clean" >>"$log" 2>&1; then
    cleanup
    echo "otp-roots: installing packages in $suite failed; see $log" >&2; tail -n 20 "$log" >&2; return 1
  fi
  cleanup
  if ! works "$part"; then echo "otp-roots: erl does not start in $part; see $log" >&2; return 1; fi
  $SUDO rm -rf "$root"
  $SUDO mv "$part" "$root"
  echo "otp-roots: $suite ready in $((SECONDS - start)) s: OTP $(otp_release "$root"), $(elixir_version "$root")"
}

otp_release() {
  $SUDO chroot "$1" /usr/bin/erl -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().' 2>/dev/null
}
elixir_version() {
  $SUDO chroot "$1" /usr/bin/env LC_ALL=C.UTF-8 elixir --short-version 2>/dev/null | sed 's/^/Elixir /' || echo "Elixir ?"
}

$SUDO mkdir -p "$ROOTS_DIR"
url=""
for suite in $SUITES; do
  root="$ROOTS_DIR/$suite"
  if [ -d "$root" ] && works "$root"; then
    echo "otp-roots: $suite reused ($root: OTP $(otp_release "$root"))"
    continue
  fi
  if [ -z "$url" ]; then
    url="$(mirror)" || { echo "otp-roots: no Debian mirror in /etc/apt/sources.list(.d); set BEAMGATE_DEBIAN_MIRROR" >&2; exit 1; }
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "otp-roots: installing debootstrap"
    $SUDO apt-get install -y -q --no-install-recommends debootstrap
  fi
  build_root "$suite" "$url"
done
