#!/usr/bin/env bash
# Builds the libFuzzer targets over the native data plane: the record layer and
# frame scanner (native/fuzz/record_fuzz.c) into build/record-fuzz, and the
# firewall's native judge (native/fuzz/judge_fuzz.c) into build/judge-fuzz,
# and a filtered link's gate over it (native/fuzz/gate_fuzz.c) into
# build/gate-fuzz, and the distribution handshake walker with the frame
# scanner after it (native/fuzz/handshake_fuzz.c) into build/handshake-fuzz,
# each with AddressSanitizer and UBSan. Needs clang-14 with
# its fuzzer runtime (Debian's clang-14 and libclang-rt-14-dev, which
# scripts/setup.sh installs) and libcrypto's headers (libssl-dev). libFuzzer
# writes the inputs it finds into the first corpus directory it is given, so
# give it a scratch one first and the repository's seeds second:
#   build/record-fuzz -runs=N "$(mktemp -d)" native/fuzz/corpus   (see test/native/fuzz.test.ts)
#   build/judge-fuzz -runs=N "$(mktemp -d)" native/fuzz/judge-corpus
#   build/gate-fuzz -runs=N "$(mktemp -d)" native/fuzz/judge-corpus
#   build/handshake-fuzz -runs=N "$(mktemp -d)" native/fuzz/handshake-corpus
set -euo pipefail
cd "$(dirname "$0")/.."
cc="${FUZZ_CC:-clang-14}"
command -v "$cc" >/dev/null 2>&1 || { echo "build-fuzz: $cc is not installed (scripts/setup.sh installs clang-14 and libclang-rt-14-dev)" >&2; exit 1; }
mkdir -p build
"$cc" -g -O1 -std=gnu11 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -o build/record-fuzz.tmp native/fuzz/record_fuzz.c native/record.c native/frames.c native/handshake.c -lcrypto
mv build/record-fuzz.tmp build/record-fuzz
echo "build-fuzz: built build/record-fuzz"
"$cc" -g -O1 -std=gnu11 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -o build/judge-fuzz.tmp native/fuzz/judge_fuzz.c native/judge.c native/verdict.c native/etf.c
mv build/judge-fuzz.tmp build/judge-fuzz
echo "build-fuzz: built build/judge-fuzz"
# The gate over the judge (native/fuzz/gate_fuzz.c): frames split across reads, questions and answers; seeded from the judge's corpus.
"$cc" -g -O1 -std=gnu11 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -o build/gate-fuzz.tmp native/fuzz/gate_fuzz.c native/gate.c native/judge.c native/verdict.c native/etf.c
mv build/gate-fuzz.tmp build/gate-fuzz
echo "build-fuzz: built build/gate-fuzz"
# The handshake walker (native/fuzz/handshake_fuzz.c): one chunk against many, sticky refusals, frames after; its own seeds.
"$cc" -g -O1 -std=gnu11 -Wall -Wextra -Werror -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -o build/handshake-fuzz.tmp native/fuzz/handshake_fuzz.c native/handshake.c native/frames.c
mv build/handshake-fuzz.tmp build/handshake-fuzz
echo "build-fuzz: built build/handshake-fuzz"
