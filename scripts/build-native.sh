#!/usr/bin/env bash
# Builds the optional native data plane (native/fastpath.c) into
# build/fastpath.node: an N-API module that links against the OpenSSL inside
# the node binary, so it needs only a C compiler and Node's headers. Without
# either, it says so and exits 0: gateways then relay on node:tls (the
# fallback, the same records on the wire). BEAMGATE_NATIVE=0 skips the build
# and removes an old module.
#   build-native.sh --sanitize   builds build/fastpath-asan.node instead, with
#   AddressSanitizer and UBSan (any report aborts), for the engine's tests:
#   it loads into node only with libasan preloaded (test/native/sanitizer.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/fastpath.node
flags=(-O2)
if [ "${1:-}" = "--sanitize" ]; then
  out=build/fastpath-asan.node
  flags=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all)
fi
mkdir -p build
if [ "${BEAMGATE_NATIVE:-1}" = "0" ]; then
  rm -f "$out"
  echo "build-native: skipped (BEAMGATE_NATIVE=0); links stay on node:tls"
  exit 0
fi
cc="${CC:-cc}"
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "build-native: no C compiler ($cc); links stay on node:tls"
  exit 0
fi
prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
inc=""
for d in "$prefix/include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$d/node_api.h" ] && [ -f "$d/openssl/evp.h" ]; then inc="$d"; break; fi
done
if [ -z "$inc" ]; then
  echo "build-native: no Node.js headers with OpenSSL (node_api.h, openssl/evp.h); links stay on node:tls"
  exit 0
fi
mkdir -p build
"$cc" "${flags[@]}" -std=gnu11 -Wall -Wextra -Werror -fPIC -shared -pthread -fvisibility=hidden \
  -DNAPI_VERSION=8 -I"$inc" -o "$out.tmp" native/fastpath.c native/relay.c native/gated.c native/record.c native/frames.c native/handshake.c native/passfd.c native/gate.c native/judge.c native/verdict.c native/etf.c native/judge_napi.c native/handshake_napi.c
mv "$out.tmp" "$out"
# The module must load into this node (its OpenSSL symbols resolve at load time).
if [ "$out" = build/fastpath.node ]; then
  node -e 'require(process.argv[1])' "$PWD/$out"
else
  LD_PRELOAD="$("$cc" -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 node -e 'require(process.argv[1])' "$PWD/$out"
fi
echo "build-native: built $out"
