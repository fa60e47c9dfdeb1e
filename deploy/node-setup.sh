#!/bin/sh
# Runs once in the beamgate image before the Erlang nodes start: writes, for
# each GATEWAY=NODE argument, the host mapping of GATEWAY's host
# (`beamgate hosts`) and the erl command line of NODE (`beamgate node-flags`)
# into the run directory that the node containers mount read-only, and the
# cluster's cookie from $ERLANG_COOKIE into home/.erlang.cookie there (mode
# 0400, owned by this user, which the node containers run as): erl-node.sh
# starts the nodes with HOME pointing at it.
#
# GATEWAY=PATTERN@HOST, with `*` in PATTERN (an operator pattern of the
# roster, e.g. alpha=ops_*@alpha.example), serves every operator name of that
# pattern: it writes the hidden, listen-nowhere flags of one name of it
# (`*` as `x`) and the pattern beside them, and erl-node.sh starts any name
# the pattern matches with those flags and its own name. (A policy that tells
# two names of one pattern apart needs them listed by name instead.)
set -eu
config=${BEAMGATE_CONFIG:-/app/config/cluster.yaml}
out=${BEAMGATE_RUN_DIR:-/run/beamgate}
cli=${BEAMGATE_CLI:-node /app/dist/cli/main.js}
[ "$#" -gt 0 ] || { echo "node-setup: usage: node-setup.sh GATEWAY=NODE|GATEWAY=PATTERN@HOST..." >&2; exit 2; }
: "${ERLANG_COOKIE:?node-setup: set ERLANG_COOKIE (the same on every host)}"
# printf is the shell's own: the cookie goes down a pipe, on no command line.
printf '%s\n' "$ERLANG_COOKIE" | $cli cookie-home --out "$out/home" >/dev/null
n=0
for pair in "$@"; do
  gateway=${pair%%=*}
  name=${pair#*=}
  if [ -z "$gateway" ] || [ -z "$name" ] || [ "$gateway" = "$pair" ]; then
    echo "node-setup: \"$pair\" is not GATEWAY=NODE" >&2
    exit 2
  fi
  $cli hosts --config "$config" --gateway "$gateway" --out "$out/$gateway.inetrc"
  case $name in
    *'*'*@*)
      n=$((n + 1))
      short=${name%@*}
      sample="$(printf '%s' "$short" | tr '*' x)@${name#*@}"
      $cli node-flags --config "$config" --node "$sample" --inetrc "$out/$gateway.inetrc" > "$out/operators.$n.cmd.tmp"
      # The sample's name must be the third word (erl -name NAME ...), which erl-node.sh replaces.
      set -- $(cat "$out/operators.$n.cmd.tmp")
      [ "${3:-}" = "$sample" ] || { echo "node-setup: unexpected flags for $sample: $(cat "$out/operators.$n.cmd.tmp")" >&2; exit 2; }
      # The flags first, then the pattern that makes erl-node.sh use them (each renamed into place).
      mv "$out/operators.$n.cmd.tmp" "$out/operators.$n.cmd"
      printf '%s\n' "$name" > "$out/operators.$n.pattern.tmp"
      mv "$out/operators.$n.pattern.tmp" "$out/operators.$n.pattern"
      echo "node-setup: operators $name on gateway $gateway: $(cat "$out/operators.$n.cmd")"
      ;;
    *)
      # Written aside and renamed, so a node never reads half a command line.
      $cli node-flags --config "$config" --node "$name" --inetrc "$out/$gateway.inetrc" > "$out/$name.cmd.tmp"
      mv "$out/$name.cmd.tmp" "$out/$name.cmd"
      echo "node-setup: $name on gateway $gateway: $(cat "$out/$name.cmd")"
      ;;
  esac
done
# Patterns of an earlier run beyond this run's are removed (a run again replaces, never adds).
for p in "$out"/operators.*.pattern; do
  [ -e "$p" ] || continue
  k=${p#"$out"/operators.}
  k=${k%.pattern}
  if [ "$k" -gt "$n" ] 2>/dev/null; then rm -f "$p" "$out/operators.$k.cmd"; fi
done
