#!/usr/bin/env bash
# Installs what beamgate needs on a fresh Debian machine with Node.js 20:
# Erlang/OTP (real nodes for the demo and tests), Elixir, stunnel4 and
# Prometheus (tests and benchmark), docker-compose (validates the compose file),
# then the npm packages, then builds, then the Debian roots with OTP 27 and 29
# for the compatibility suite and the benchmark (scripts/otp-roots.sh, cached;
# BEAMGATE_OTP_ROOTS=0 skips them). Safe to run again. On a machine run by
# systemd it keeps Debian's epmd.socket (a real EPMD on every address) from
# starting and disables it (scripts/no-real-epmd.sh); it never starts an epmd.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v erl >/dev/null 2>&1 || need+=(erlang-base erlang-ssl erlang-public-key erlang-crypto erlang-asn1)
[ -d /usr/lib/erlang/lib ] && ls /usr/lib/erlang/lib | grep -q '^ssl-' || need+=(erlang-ssl)
command -v elixir >/dev/null 2>&1 || need+=(elixir)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ "${BEAMGATE_OTP_ROOTS:-1}" != "0" ]; then
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  # On a machine run by systemd, erlang-base would enable and start epmd.socket.
  bash scripts/no-real-epmd.sh guard-install
  trap 'bash scripts/no-real-epmd.sh end-install' EXIT
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
  bash scripts/no-real-epmd.sh end-install
  trap - EXIT
fi
# Never leave a real EPMD on the network (nothing to do without systemd).
bash scripts/no-real-epmd.sh disable

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
bash scripts/otp-roots.sh
echo "setup: done (erl: $(command -v erl), node: $(node --version))"
