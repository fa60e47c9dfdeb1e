#!/bin/sh
# Runs once in the beamgate image before the Erlang nodes start: writes, for
# each GATEWAY=NODE argument, the host mapping of GATEWAY's host
# (`beamgate hosts`) and the erl command line of NODE (`beamgate node-flags`)
# into the run directory that the node containers mount read-only. Operator
# names (not roster nodes) get hidden, listen-nowhere flags.
set -eu
config=${BEAMGATE_CONFIG:-/app/config/cluster.yaml}
out=${BEAMGATE_RUN_DIR:-/run/beamgate}
cli=${BEAMGATE_CLI:-node /app/dist/cli/main.js}
[ "$#" -gt 0 ] || { echo "node-setup: usage: node-setup.sh GATEWAY=NODE..." >&2; exit 2; }
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
