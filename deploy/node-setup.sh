#!/bin/sh
# Runs once in the beamgate image before the Erlang nodes start: writes, for
# each GATEWAY=NODE argument, the host mapping of GATEWAY's host
# (`beamgate hosts`) and the erl command line of NODE (`beamgate node-flags`)
# into the run directory that the node containers mount read-only, and the
# cluster's cookie from $ERLANG_COOKIE into home/.erlang.cookie there (mode
# 0400, owned by this user, which the node containers run as): erl-node.sh
# starts the nodes with HOME pointing at it. Operator names (not roster
# nodes) get hidden, listen-nowhere flags.
set -eu
config=${BEAMGATE_CONFIG:-/app/config/cluster.yaml}
out=${BEAMGATE_RUN_DIR:-/run/beamgate}
cli=${BEAMGATE_CLI:-node /app/dist/cli/main.js}
[ "$#" -gt 0 ] || { echo "node-setup: usage: node-setup.sh GATEWAY=NODE..." >&2; exit 2; }
: "${ERLANG_COOKIE:?node-setup: set ERLANG_COOKIE (the same on every host)}"
# printf is the shell's own: the cookie goes down a pipe, on no command line.
printf '%s\n' "$ERLANG_COOKIE" | $cli cookie-home --out "$out/home" >/dev/null
for pair in "$@"; do
  gateway=${pair%%=*}
  name=${pair#*=}
  if [ -z "$gateway" ] || [ -z "$name" ] || [ "$gateway" = "$pair" ]; then
    echo "node-setup: \"$pair\" is not GATEWAY=NODE" >&2
    exit 2
  fi
  $cli hosts --config "$config" --gateway "$gateway" --out "$out/$gateway.inetrc"
  # Written aside and renamed, so a node never reads half a command line.
  $cli node-flags --config "$config" --node "$name" --inetrc "$out/$gateway.inetrc" > "$out/$name.cmd.tmp"
  mv "$out/$name.cmd.tmp" "$out/$name.cmd"
  echo "node-setup: $name on gateway $gateway: $(cat "$out/$name.cmd")"
done
