#!/usr/bin/env bash
# Makes the Debian root that stands in for the Node.js base image of the
# gateway image (node:20-bookworm-slim) where no image registry answers:
# Debian bookworm (debootstrap --variant=minbase, from the mirror this
# machine's apt uses) with a C compiler and libc headers (the native data
# plane is compiled in the image's build stage), CA certificates, this
# machine's own Node.js 20 package files (node, npm and Node's headers, which
# build-native.sh needs) and the user `node` (uid 1000), as in the upstream
# image. test/integration/docker.test.ts imports it with `docker import`, and
# builds the Prometheus stand-in on it; the Erlang stand-in is the cached
# trixie root of scripts/otp-roots.sh (OTP 27).
#
#   BEAMGATE_IMAGE_ROOTS=0       skip (the real-engine test then says what is missing and fails)
#   BEAMGATE_ROOTS_DIR=DIR       where the roots live (default /var/cache/beamgate/roots)
#   BEAMGATE_DEBIAN_MIRROR=URL   the mirror, when apt's sources name none
#
# Cached: a root that exists and whose node runs is reused; it is built in
# DIR/bookworm-node.partial and renamed only once it works (log DIR/bookworm-node.log).
set -euo pipefail

if [ "${BEAMGATE_IMAGE_ROOTS:-1}" = "0" ]; then
  echo "image-roots: skipped (BEAMGATE_IMAGE_ROOTS=0)"
  exit 0
fi

ROOTS_DIR="${BEAMGATE_ROOTS_DIR:-/var/cache/beamgate/roots}"
NAME=bookworm-node
root="$ROOTS_DIR/$NAME" part="$ROOTS_DIR/$NAME.partial" log="$ROOTS_DIR/$NAME.log"
PACKAGES=gcc,libc6-dev,ca-certificates

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

node_version() { $SUDO chroot "$1" /usr/bin/node --version 2>/dev/null; }

# The Node.js of this machine must be a package (dpkg knows its files), with its headers.
NODE_PKG="$(dpkg -S "$(readlink -f "$(command -v node)")" 2>/dev/null | cut -d: -f1 || true)"
if [ -z "$NODE_PKG" ] || ! dpkg -L "$NODE_PKG" | grep '/include/node/node_api.h$' >/dev/null; then
  echo "image-roots: this machine's node is not a Debian package with Node's headers (dpkg -S $(command -v node)); cannot make $root" >&2
  exit 1
fi
want="$(node --version)"

if [ -d "$root" ] && [ "$(node_version "$root")" = "$want" ] && [ -x "$root/usr/bin/gcc" ] && $SUDO chroot "$root" /usr/bin/npm --version >/dev/null 2>&1; then
  echo "image-roots: $NAME reused ($root: Node $want, $($SUDO chroot "$root" /usr/bin/gcc -dumpfullversion 2>/dev/null | sed 's/^/gcc /'))"
  exit 0
fi

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

heavy_run() {
  if command -v heavy >/dev/null 2>&1; then heavy "$@"; else "$@"; fi
}

command -v debootstrap >/dev/null 2>&1 || { echo "image-roots: debootstrap is missing (scripts/setup.sh installs it)" >&2; exit 1; }
url="$(mirror)" || { echo "image-roots: no Debian mirror in /etc/apt/sources.list(.d); set BEAMGATE_DEBIAN_MIRROR" >&2; exit 1; }
start=$SECONDS
echo "image-roots: making $root from $url (bookworm with $PACKAGES and Node $want; log $log)"
$SUDO mkdir -p "$ROOTS_DIR"
$SUDO rm -rf "$part"
: >"$log"
# debootstrap installs the extra packages itself: no /proc mount, no apt run in the root.
heavy_run $SUDO debootstrap --variant=minbase --include="$PACKAGES" bookworm "$part" "$url" >>"$log" 2>&1 || {
  echo "image-roots: debootstrap failed; see $log" >&2; tail -n 20 "$log" >&2; exit 1; }
$SUDO chroot "$part" apt-get clean
$SUDO rm -rf "$part/var/lib/apt/lists/"* "$part/var/cache/apt/"*.bin
# This machine's Node.js package files (regular files and symbolic links, as dpkg lists them).
dpkg -L "$NODE_PKG" | while read -r f; do if [ -f "$f" ] || [ -L "$f" ]; then printf '%s\n' "${f#/}"; fi; done |
  $SUDO tar -C / --no-recursion -cf - -T - | $SUDO tar -C "$part" -xf -
# npm as it is on this machine (an npm updated in place no longer matches dpkg's list).
npm_dir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/lib/node_modules/npm"
if [ -d "$npm_dir" ]; then
  $SUDO rm -rf "$part$npm_dir"
  $SUDO tar -C / -cf - "${npm_dir#/}" | $SUDO tar -C "$part" -xf -
fi
# The root trusts what this machine trusts: a machine whose egress goes
# through a proxy with its own CA (in /usr/local/share/ca-certificates) can
# then run `npm ci` in the image build as it runs it itself.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  $SUDO cp /usr/local/share/ca-certificates/*.crt "$part/usr/local/share/ca-certificates/"
  $SUDO chroot "$part" /usr/sbin/update-ca-certificates >>"$log" 2>&1
fi
# The upstream image's user: uid/gid 1000, `node`.
$SUDO chroot "$part" /usr/sbin/groupadd --gid 1000 node
$SUDO chroot "$part" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/sh --create-home node
[ "$(node_version "$part")" = "$want" ] || { echo "image-roots: node does not run in $part" >&2; exit 1; }
$SUDO chroot "$part" /usr/bin/npm --version >/dev/null 2>&1 || { echo "image-roots: npm does not run in $part" >&2; exit 1; }
$SUDO rm -rf "$root"
$SUDO mv "$part" "$root"
echo "image-roots: $NAME ready in $((SECONDS - start)) s: Node $want, $($SUDO chroot "$root" /usr/bin/gcc -dumpfullversion | sed 's/^/gcc /')"
