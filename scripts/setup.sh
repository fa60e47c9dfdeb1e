#!/usr/bin/env bash
# Installs what beamgate needs on a fresh Debian machine with Node.js 20:
# Erlang/OTP (real nodes for the demo and tests), Elixir, the native engine's
# sanitizer and fuzzing toolchain (gcc's ASan/UBSan, clang-14, libssl-dev), stunnel4 and
# Prometheus (tests and benchmark), docker-compose (validates the compose file),
# RabbitMQ (Debian's rabbitmq-server: real brokers clustered through beamgate
# in the tests), then the npm packages, then builds, then the Debian roots with
# OTP 27 and 29 for the compatibility suite and the benchmark
# (scripts/otp-roots.sh), and the RabbitMQ 4 root derived from trixie's for the
# RabbitMQ suite (scripts/rabbitmq-root.sh); all cached, BEAMGATE_OTP_ROOTS=0
# skips them. Also Debian's docker.io and the bookworm root with Node 20 that
# the real-engine test imports as a base image (scripts/image-roots.sh, cached;
# BEAMGATE_IMAGE_ROOTS=0 skips it). Safe to run again.
# On a machine run by systemd it disables Debian's epmd.socket (a real EPMD on
# every address, scripts/no-real-epmd.sh); it never starts an epmd.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v erl >/dev/null 2>&1 || need+=(erlang-base erlang-ssl erlang-public-key erlang-crypto erlang-asn1)
[ -d /usr/lib/erlang/lib ] && ls /usr/lib/erlang/lib | grep -q '^ssl-' || need+=(erlang-ssl)
command -v elixir >/dev/null 2>&1 || need+=(elixir)
command -v stunnel4 >/dev/null 2>&1 || need+=(stunnel4)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
# The engine the compose deployment runs in (test/integration/docker.test.ts starts dockerd when none runs).
[ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ -x /usr/sbin/rabbitmq-server ] || need+=(rabbitmq-server)
# The native engine's own tests: its AddressSanitizer build (gcc's libasan,
# libubsan) and the libFuzzer target (clang-14 with its fuzzer runtime, and
# libcrypto's headers).
command -v gcc >/dev/null 2>&1 || need+=(gcc)
[ -e "$(gcc -print-file-name=libasan.so 2>/dev/null)" ] || need+=(libasan8)
[ -e "$(gcc -print-file-name=libubsan.so 2>/dev/null)" ] || need+=(libubsan1)
command -v clang-14 >/dev/null 2>&1 || need+=(clang-14)
ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || need+=(libclang-rt-14-dev)
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
if [ "${BEAMGATE_OTP_ROOTS:-1}" != "0" ]; then
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi

# Several installs may run at once on a shared machine: apt holds one lock.
APT_LOCK=/tmp/beamgate-apt.lock
POLICY=/usr/sbin/policy-rc.d

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  # rabbitmq-server's postinst starts a broker (and with it a real epmd on
  # 4369): a policy-rc.d that answers 101 ("action forbidden") stops that. One
  # already there (Docker images ship one) is left as it was.
  own_policy=""
  if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# beamgate setup: start no service during the install\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    own_policy=1
  fi
  trap '[ -n "$own_policy" ] && $SUDO rm -f "$POLICY"' EXIT
  $SUDO flock "$APT_LOCK" apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO flock "$APT_LOCK" apt-get install -y -q --no-install-recommends "${need[@]}"
  [ -n "$own_policy" ] && $SUDO rm -f "$POLICY"
  own_policy=""
  trap - EXIT
  # Nothing the install brought may be left serving: no broker, no real epmd
  # (beamgate's gateways are the EPMD on every host).
  left=$(ss -ltnpH 2>/dev/null | grep -E ':(4369|5672|15672|25672)[[:space:]]|"epmd"' || true)
  if [ -n "$left" ]; then
    echo "setup: the install left a broker or epmd listening; stop it before running the tests:" >&2
    echo "$left" >&2
    exit 1
  fi
fi
# Never leave a real EPMD on the network (nothing to do without systemd).
bash scripts/no-real-epmd.sh disable

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
npm run build
# The optional native data plane (needs cc and Node's headers; without them links stay on node:tls).
bash scripts/build-native.sh
bash scripts/otp-roots.sh
bash scripts/rabbitmq-root.sh
bash scripts/image-roots.sh
echo "setup: done (erl: $(command -v erl), node: $(node --version))"
